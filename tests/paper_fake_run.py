"""A hand-made run folder for notebook 08's tests: the long tables stages 05-07 hand over, notebook 01's metrics
and notebook 04's margins, no models."""
import json
from pathlib import Path

import pandas as pd

from editcaption import records
from editcaption.reporting import tables


def _long(table, rows, judge, data):
    return pd.DataFrame([dict(zip(records.LONG_COLUMNS, (table, *r, judge, data))) for r in rows])


def make_fake_run(run_dir: Path, *, with_downstream: bool = True) -> Path:
    """Write the stage files notebook 08 reads under run_dir; leave 07 out when with_downstream is False."""
    auto = run_dir / "05_automatic_evaluation"
    t3 = []
    for model, s in (("base", 1.9), ("SFT", 3.2), ("dpo", 3.4), ("hae", 3.6), ("teacher", 3.0)):
        for metric, v in (("S", s), ("Acc", s + 0.1), ("Comp", s - 0.1), ("Clar", s)):
            t3.append((model, "synthetic-test", metric, v, v - 0.2, v + 0.2))
    tables.write_long(_long("table3", t3, "rule", "synthetic-test n=24"), auto, "table3")
    t4 = [(m, "synthetic-test", "S", v, v - 0.2, v + 0.2) for m, v in (("dpo", 3.4), ("hae", 3.6))]
    tables.write_long(_long("table4", t4, "rule", "synthetic-test n=24"), auto, "table4")
    human = run_dir / "06_human_evaluation"
    t2 = [(m, "synthetic-test", k, v, v - 5, v + 5) for m, vals in (("base", (40, 48, 10, 2)), ("hae", (70, 18, 11, 1)))
          for k, v in zip(("Correct", "P0", "P1", "P2"), vals)]
    tables.write_long(_long("table2", t2, "simulated-annotators", "synthetic-test n=24"), human, "table2")
    if with_downstream:
        t5 = [(m, "synthetic-heldout", k, v, v * 0.9, v * 1.1) for m, vals in (("untrained", (18.0, 0.6, 0.2)),
                                                                              ("hae", (21.0, 0.7, 0.5)),
                                                                              ("gt", (22.0, 0.72, 0.6)))
              for k, v in zip(("PSNR", "SSIM", "edit_success"), vals)]
        tables.write_long(_long("table5", t5, "pixel-metrics", "synthetic-heldout n=16"), run_dir / "07_downstream_editing",
                          "table5")
    stage01 = run_dir / "01_dataset_construction"
    stage01.mkdir(parents=True, exist_ok=True)
    (stage01 / "metrics.json").write_text(json.dumps({
        "n_pairs": 48, "category_share": {"semantic": 0.25, "stylistic": 0.25, "structural": 0.5},
        "edit_type_counts": {"add": 6, "remove": 6, "recolor": 12, "move": 12, "mirror": 12}}))
    stage04 = run_dir / "04_hae_dpo"
    stage04.mkdir(parents=True, exist_ok=True)
    rows = [{"id": f"p{i}", "error_type": ("orientation", "viewpoint", "detail")[i % 3], "severity": ("P0", "P1", "P2")[i % 3],
             "st_term": 0.1 * (i % 3), "h_term": 0.4 + 0.02 * i, "margin": 0.1 * (i % 3) + 0.4 + 0.02 * i} for i in range(12)]
    pd.DataFrame(rows).to_csv(stage04 / "margins.csv", index=False)
    return run_dir
