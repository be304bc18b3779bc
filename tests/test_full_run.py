"""`editcaption run --profile smoke`: every notebook in order, one run folder with every table and figure and a
browsable index (issue: notebooks 07-08 acceptance)."""
import json

import pytest

from editcaption import config

TABLES = {"05_automatic_evaluation": ("table3", "table4"), "06_human_evaluation": ("table2",),
          "07_downstream_editing": ("table5",)}


@pytest.mark.slow
def test_smoke_profile_runs_every_notebook_and_writes_every_table_and_figure(smoke_run):
    run, results = smoke_run
    notebooks = [nb.stem for nb in config.list_notebooks()]
    assert [r.status for r in results] == ["ok"] * len(notebooks) and len(notebooks) == 9
    for stage, tables in TABLES.items():
        for table in tables:
            long = (run / stage / f"{table}_long.csv").read_text().splitlines()
            assert long[0] == "table,model,benchmark,metric,value,low,high,judge,data" and len(long) > 1, (stage, table)
            for suffix in ("csv", "md", "tex"):
                assert (run / stage / f"{table}.{suffix}").stat().st_size > 0, (stage, table, suffix)
    final = json.loads((run / "08_paper_tables_and_figures" / "metrics.json").read_text())
    assert final["missing_stages"] == []
    for relative in final["tables"] + final["figures"]:
        assert (run / "08_paper_tables_and_figures" / relative).stat().st_size > 0, relative
    assert any(f.endswith(".pdf") for f in final["figures"]) and any(f.endswith(".png") for f in final["figures"])
    index = (run / "index.html").read_text()
    for name in notebooks:
        assert f'href="html/{name}.html"' in index and (run / "html" / f"{name}.html").exists()
    summary = json.loads((run / "run.json").read_text())
    assert [s["status"] for s in summary["stages"]] == ["ok"] * len(notebooks)
