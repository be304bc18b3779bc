"""Table files: CI cells, Markdown/LaTeX escaping, long-format validation and the long -> display pivot."""
import math

import pandas as pd
import pytest

from editcaption import records
from editcaption.records import RecordError
from editcaption.reporting import tables


def _long(rows):
    return pd.DataFrame([dict(zip(records.LONG_COLUMNS, r)) for r in rows])


def test_ci_cell_formats_value_and_interval():
    assert tables.ci_cell(2.3451, 2.30149, 2.39) == "2.345 [2.301, 2.390]"
    assert tables.ci_cell(2.3451, None, None) == "2.345"
    assert tables.ci_cell(2.3451, math.nan, 2.4) == "2.345"
    assert tables.ci_cell(1.0, 0.5, 1.5, digits=1) == "1.0 [0.5, 1.5]"
    assert tables.ci_cell(math.nan, 0.0, 1.0) == ""


def test_markdown_escapes_pipes_and_newlines():
    df = pd.DataFrame({"a|b": ["x|y", "line1\nline2"]}, index=pd.Index(["m1", "m2"], name="model"))
    md = tables.to_markdown(df)
    lines = md.strip().split("\n")
    assert lines[0] == r"| model | a\|b |"
    assert lines[1] == "| --- | --- |"
    assert lines[2] == r"| m1 | x\|y |"
    assert lines[3] == "| m2 | line1 line2 |"
    assert tables.to_markdown(df, index=False).split("\n")[0] == r"| a\|b |"


def test_latex_is_booktabs_and_escaped():
    df = pd.DataFrame({"S_avg %": ["1.0 [0.9, 1.1]"], "a&b": ["$x#"]}, index=pd.Index(["HAE_DPO"], name="model"))
    tex = tables.to_latex(df, caption="Scores & 95% CI", label="tab:t3")
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"\begin{tabular}{lll}" in tex
    assert r"model & S\_avg \% & a\&b \\" in tex
    assert r"HAE\_DPO & 1.0 [0.9, 1.1] & \$x\# \\" in tex
    assert r"\caption{Scores \& 95\% CI}" in tex and r"\label{tab:t3}" in tex
    assert tables.latex_escape("a\\b~^{}") == r"a\textbackslash{}b\textasciitilde{}\textasciicircum{}\{\}"


def test_write_table_writes_three_files(tmp_path):
    df = pd.DataFrame({"S": ["2.000 [1.900, 2.100]"]}, index=pd.Index(["SFT"], name="model"))
    paths = tables.write_table(df, tmp_path / "out", "table3", caption="Table 3")
    assert set(paths) == {"csv", "md", "tex"}
    assert pd.read_csv(paths["csv"], index_col=0).loc["SFT", "S"] == "2.000 [1.900, 2.100]"
    assert paths["md"].read_text().startswith("Table 3\n\n| model | S |")
    assert r"\label{tab:table3}" in paths["tex"].read_text()


def test_write_long_validates_and_names_the_missing_column(tmp_path):
    rows = _long([("table3", "SFT", "synthetic", "S", 2.0, 1.9, 2.1, "rule", "synthetic-test n=4")])
    path = tables.write_long(rows, tmp_path, "table3")
    assert path.name == "table3_long.csv"
    back = pd.read_csv(path)
    assert tuple(back.columns) == records.LONG_COLUMNS and back.loc[0, "value"] == 2.0
    with pytest.raises(RecordError, match=r"table3_long.csv.*field 'judge'"):
        tables.write_long(rows.drop(columns=["judge"]), tmp_path, "table3")
    bad = rows.copy()
    bad["value"] = ["high"]
    with pytest.raises(RecordError, match=r"row 0, field 'value'"):
        tables.write_long(bad, tmp_path, "table3")


def test_wide_pivots_with_ci_cells():
    rows = _long([
        ("table3", "SFT", "synthetic", "S", 2.0, 1.9, 2.1, "rule", "d"),
        ("table3", "SFT", "hq-edit", "S", 3.0, None, None, "llm", "d"),
        ("table3", "DPO", "synthetic", "S", 2.5, 2.4, 2.6, "rule", "d"),
    ])
    table = tables.wide(rows, digits=2)
    assert list(table.index) == ["SFT", "DPO"]
    assert list(table.columns) == ["synthetic S", "hq-edit S"]
    assert table.loc["SFT", "synthetic S"] == "2.00 [1.90, 2.10]"
    assert table.loc["SFT", "hq-edit S"] == "3.00"
    assert table.loc["DPO", "hq-edit S"] == ""
    one = tables.wide(rows[rows["benchmark"] == "synthetic"])
    assert list(one.columns) == ["S"]
