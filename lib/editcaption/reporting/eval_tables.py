"""Display tables of the evaluations as files: tables 3 and 4 (notebook 05) from their long rows, with a Δ S
column against standard DPO, and the annotators' agreement table (notebook 06)."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Any

import pandas as pd

from editcaption.eval import automatic
from editcaption.reporting import tables
from editcaption.reporting.tables import ci_cell


def display_table(long: pd.DataFrame, *, digits: int = 3, delta_vs: str | None = None) -> pd.DataFrame:
    """The display table of long rows: a column per benchmark (tagged with the judge where several judges
    scored it) and metric; with `delta_vs`, a "Δ S" column per benchmark against that model's S."""
    if long.empty:
        return pd.DataFrame(index=pd.Index([], name="model"))
    long = long.copy()
    judges_per = long.groupby("benchmark")["judge"].nunique()
    long["benchmark"] = [f"{b} [{j}]" if judges_per[b] > 1 else b for b, j in zip(long["benchmark"], long["judge"])]
    table = tables.wide(long, digits=digits)
    if delta_vs is not None:
        s = long[long["metric"] == "S"]
        one = long["benchmark"].nunique() == 1
        for bench, part in s.groupby("benchmark", sort=False):
            by_model = dict(zip(part["model"], part["value"].astype(float)))
            if delta_vs not in by_model:
                continue
            column = "Δ S" if one else f"{bench} Δ S"
            table[column] = [f"{by_model[m] - by_model[delta_vs]:+.{digits}f}" if m in by_model else ""
                             for m in table.index]
    return table


def write_tables(summaries: dict, out_dir: str | Path, *, table3_order: list[str], table4_order: list[str],
                 digits: int = 3) -> dict[str, dict]:
    """table3 and table4: <stem>_long.csv and the display table as CSV/Markdown/LaTeX under out_dir."""
    written = {}
    for stem, order, caption, delta in (
            ("table3", table3_order, "Automatic evaluation: S, Acc, Comp, Clar with 95 % bootstrap CIs", None),
            ("table4", table4_order, "Ablation of the HAE-DPO margin: S, Acc, Comp, Clar with 95 % bootstrap CIs, "
                                     "Δ S against standard DPO", "DPO")):
        long = automatic.table_long(summaries, order, stem)
        files = {"long": tables.write_long(long, out_dir, stem)}
        files.update(tables.write_table(display_table(long, digits=digits, delta_vs=delta), out_dir, stem,
                                        caption=caption))
        written[stem] = {"rows": long, **files}
    return written


def agreement_table(agree: Mapping[str, Any], against_reference: Mapping[str, float] | None = None, *,
                    reference: str = "rule judge", digits: int = 3) -> pd.DataFrame:
    """One row for all annotators (the kappa of `agreement` with its CI), one per pair of annotators, and one
    per annotator against the reference labels; columns kappa, low, high, items, "kappa [95% CI]"."""
    rows = [{"annotators": f"all {len(agree['annotators'])} ({agree['method']})", "kappa": agree["kappa"],
             "low": agree["low"], "high": agree["high"], "items": agree["n_items"]}]
    rows += [{"annotators": pair, "kappa": k} for pair, k in agree["pairwise_cohen"].items()]
    rows += [{"annotators": f"{name} | {reference}", "kappa": k} for name, k in (against_reference or {}).items()]
    table = pd.DataFrame(rows, columns=["annotators", "kappa", "low", "high", "items"]).set_index("annotators")
    table["items"] = ["" if pd.isna(v) else int(v) for v in table["items"]]
    table["kappa [95% CI]"] = [ci_cell(r.kappa, r.low, r.high, digits) for r in table.itertuples()]
    return table


def write_table2(rows: pd.DataFrame, stage_dir: str | Path, *, judge: str, n_pairs: int) -> dict[str, Path]:
    """Table 2 (notebook 06): its long rows and display table as files; returns every file written."""
    return {"long": tables.write_long(rows, stage_dir, "table2"),
            **tables.write_table(tables.wide(rows, digits=2), stage_dir, "table2",
                                 caption=f"Human evaluation ({judge}, {n_pairs} pairs): Correct, P0, P1, P2 rates in "
                                         "percent with 95% bootstrap CIs.")}


def write_agreement(agreement: pd.DataFrame, stage_dir: str | Path, *, judge: str) -> dict[str, Path]:
    """The annotators' agreement table (notebook 06) as files, prefixed agreement_ in what it returns."""
    written = tables.write_table(agreement[["kappa [95% CI]", "items"]], stage_dir, "agreement",
                                 caption=f"Inter-annotator agreement ({judge}): kappa with 95% bootstrap CI.")
    return {f"agreement_{kind}": path for kind, path in written.items()}


def judge_agreement_view(agreement: list[dict]):
    """The judges' agreement per benchmark to show, or a line saying there is none to measure."""
    return pd.DataFrame(agreement).round(3) if agreement else "one judge per benchmark: no agreement to measure"
