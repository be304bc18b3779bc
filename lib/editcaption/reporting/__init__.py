"""Tables and figures: the paper's published numbers beside ours (notebook 08), and the plots each notebook shows."""
