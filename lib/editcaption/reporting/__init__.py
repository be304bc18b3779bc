"""Tables and figures: the paper's published numbers beside ours (notebook 08), and the plots each notebook shows."""
from editcaption.reporting.paper import paper_results

__all__ = ["paper_results"]
