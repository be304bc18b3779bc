"""Paper tables as files: a long format every stage writes, and display tables as CSV, Markdown and LaTeX."""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from editcaption.records import missing_value, validate_long

_LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def ci_cell(value: float, low: float | None, high: float | None, digits: int = 3) -> str:
    """"2.345 [2.301, 2.390]" when both bounds are known, else "2.345"; "" for a missing value."""
    if missing_value(value):
        return ""
    cell = f"{value:.{digits}f}"
    if not (missing_value(low) or missing_value(high)):
        cell += f" [{low:.{digits}f}, {high:.{digits}f}]"
    return cell


def _text(x) -> str:
    """A cell as text; missing -> ""."""
    if missing_value(x):
        return ""
    return str(x)


def _rows(df: pd.DataFrame, index: bool) -> tuple[list[str], list[list[str]]]:
    """Header and body of `df` as strings, with the index as the first column when asked."""
    header = [_text(c) for c in df.columns]
    body = [[_text(v) for v in row] for row in df.itertuples(index=False, name=None)]
    if index:
        header = [_text(df.index.name) if df.index.name else ""] + header
        body = [[_text(i)] + row for i, row in zip(df.index, body)]
    return header, body


def to_markdown(df: pd.DataFrame, *, index: bool = True) -> str:
    """A GitHub-flavoured Markdown table ('|' and newlines in cells escaped)."""
    header, body = _rows(df, index)

    def line(cells):
        return "| " + " | ".join(c.replace("|", r"\|").replace("\n", " ") for c in cells) + " |"
    return "\n".join([line(header), "| " + " | ".join("---" for _ in header) + " |"] + [line(r) for r in body]) + "\n"


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(df: pd.DataFrame, *, caption: str = "", label: str = "", index: bool = True) -> str:
    """A booktabs table (tabular in a table environment), every cell, header and the caption escaped."""
    header, body = _rows(df, index)
    out = [r"\begin{table}[t]", r"\centering"]
    if caption:
        out.append(rf"\caption{{{latex_escape(caption)}}}")
    if label:
        out.append(rf"\label{{{label}}}")
    out += [r"\begin{tabular}{" + ("l" * index) + "l" * (len(header) - index) + "}", r"\toprule",
            " & ".join(latex_escape(c) for c in header) + r" \\", r"\midrule"]
    out += [" & ".join(latex_escape(c) for c in row) + r" \\" for row in body]
    out += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(out) + "\n"


def write_table(df: pd.DataFrame, out_dir, stem: str, *, caption: str = "", index: bool = True) -> dict[str, Path]:
    """Write <stem>.csv, <stem>.md and <stem>.tex under out_dir; return their paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"csv": out_dir / f"{stem}.csv", "md": out_dir / f"{stem}.md", "tex": out_dir / f"{stem}.tex"}
    df.to_csv(paths["csv"], index=index)
    md = to_markdown(df, index=index)
    paths["md"].write_text((f"{caption}\n\n" if caption else "") + md)
    paths["tex"].write_text(to_latex(df, caption=caption, label=f"tab:{stem}", index=index))
    return paths


def write_long(rows: pd.DataFrame, out_dir, stem: str) -> Path:
    """Validate the long format and write <stem>_long.csv under out_dir."""
    path = Path(out_dir) / f"{stem}_long.csv"
    rows = validate_long(rows, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows.to_csv(path, index=False)
    return path


def wide(rows: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """Long rows -> display table: index model (first-seen order), columns "<benchmark> <metric>" (or the metric
    alone when there is one benchmark), cells ci_cell(value, low, high)."""
    rows = validate_long(rows)
    one_benchmark = rows["benchmark"].nunique() <= 1
    columns: list[str] = []
    models: list[str] = []
    cells: dict[tuple[str, str], str] = {}
    for r in rows.itertuples(index=False):
        column = str(r.metric) if one_benchmark else f"{r.benchmark} {r.metric}"
        if column not in columns:
            columns.append(column)
        if r.model not in models:
            models.append(r.model)
        cells[(r.model, column)] = ci_cell(float(r.value) if not missing_value(r.value) else math.nan, r.low, r.high, digits)
    table = pd.DataFrame([[cells.get((m, c), "") for c in columns] for m in models],
                         index=pd.Index(models, name="model"), columns=columns)
    return table
