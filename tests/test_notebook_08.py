"""Notebook 08 on a hand-made run folder: every paper table (as published and beside ours) and every figure is written,
the missing downstream stage is recorded, and the run's index.html shows them."""
import json

import pytest
from paper_fake_run import make_fake_run

from editcaption import runner
from editcaption.reporting import paper

STAGE = "08_paper_tables_and_figures"
FIGURES = ("figure2_distribution", "margin_distributions", "margin_terms", "table2_scores", "table3_scores",
           "table4_scores", "table5_downstream")


@pytest.mark.slow
def test_notebook_08_writes_every_table_and_figure(tmp_path):
    make_fake_run(tmp_path / "t", with_downstream=False)
    results = runner.run_profile("smoke", only="08", run_name="t", output_root=str(tmp_path), progress=False)
    assert [r.status for r in results] == ["ok"]
    stage = tmp_path / "t" / STAGE
    metrics = json.loads((stage / "metrics.json").read_text())
    for table in paper.PAPER_TABLES:
        for suffix in ("csv", "md", "tex"):
            assert (stage / "paper" / f"{table}_paper.{suffix}").stat().st_size > 0
            assert (stage / "vs_ours" / f"{table}_vs_ours.{suffix}").stat().st_size > 0
            assert f"paper/{table}_paper.{suffix}" in metrics["tables"] and f"vs_ours/{table}_vs_ours.{suffix}" in metrics["tables"]
    for name in FIGURES:
        for suffix in ("png", "pdf"):
            assert (stage / "figures" / f"{name}.{suffix}").stat().st_size > 5_000
            assert f"figures/{name}.{suffix}" in metrics["figures"]
    assert metrics["missing_stages"] == ["07_downstream_editing/table5_long.csv", "02_sft.ipynb", "04_hae_dpo.ipynb"]
    assert "not run (07_downstream_editing missing)" in (stage / "vs_ours" / "table5_vs_ours.md").read_text()
    table3 = (stage / "vs_ours" / "table3_vs_ours.md").read_text()
    assert "| Qwen3-VL-235B-A22B (SFT+HAE-DPO) | 4.720 | 3.600 [3.400, 3.800] |" in table3
    index = (tmp_path / "t" / "index.html").read_text()
    assert 'href="html/08_paper_tables_and_figures.html"' in index
    assert f'src="{STAGE}/figures/table3_scores.png"' in index and "4.720" in index
