"""Notebook 07's tables as files: table 5 of the CPU editors (with each captioner's instruction quality beside
it) and, on a cluster, table 5 of Step1X-Edit."""
from __future__ import annotations

from pathlib import Path
from typing import Mapping

import pandas as pd

from editcaption.downstream.edit_eval import MAIN_METRICS
from editcaption.reporting import tables

TABLE5_CAPTION = ("CPU miniature of table 5: a small editor trained on each captioner's instructions, scored on "
                  "held-out synthetic pairs (95 % bootstrap CIs).")


def write_table5(long_rows: pd.DataFrame, results: Mapping[str, Mapping], stage_dir: str | Path) -> pd.DataFrame:
    """table5 (long rows, and the display table of the main metrics with each captioner's instruction S in front;
    the identity baseline has none) in the stage folder; returns the display table."""
    tables.write_long(long_rows, stage_dir, "table5")
    table5 = tables.wide(long_rows[long_rows["metric"].isin(MAIN_METRICS)])
    table5.insert(0, "caption S", [f"{r['caption_quality']['S']:.2f}" for r in results.values()] + ["-"])
    tables.write_table(table5, stage_dir, "table5", caption=TABLE5_CAPTION)
    return table5


def add_step1x_rows(long_rows: pd.DataFrame, step1x_rows: pd.DataFrame | None, stage_dir: str | Path) -> pd.DataFrame:
    """Table 5's long rows with Step1X-Edit's appended (written again, and table5_step1x beside them); the rows as
    they were when Step1X-Edit did not run."""
    if step1x_rows is None:
        return long_rows
    long_rows = pd.concat([long_rows, step1x_rows], ignore_index=True)
    tables.write_long(long_rows, stage_dir, "table5")
    tables.write_table(tables.wide(step1x_rows), stage_dir, "table5_step1x",
                       caption="Table 5: Step1X-Edit fine-tuned on each captioner's triplets.")
    return long_rows


def step1x_view(step1x_rows: pd.DataFrame | None):
    """Step1X-Edit's table 5 to show, or a line saying it did not run."""
    return "Step1X-Edit did not run (editor_backend 'cpu')" if step1x_rows is None else tables.wide(step1x_rows)
