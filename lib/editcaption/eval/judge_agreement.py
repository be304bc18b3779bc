"""How far the rule judge agrees with people: a hand-labelled set of instructions, read against table 6.

`assets/judge_labels.jsonl` holds 112 instructions about 20 synthetic pairs, each labelled by hand with the
worst error a reader of the paper's table 6 would record (failure mode and severity, or clean), the table-6
row it falls under and a note. The labels were written from table 6 before any model output was looked at
and before the judge was run on them; they are not edited to match the judge. Conventions of the labels:

- orientation: a left/right/up/down, pointing or turning direction stated wrongly or left out;
- viewpoint: a flip, rotation or zoom of the whole image wrong, left out, put on one object, or stated when
  the pair shows none (table 6 row 4, always P0);
- detail: everything else (colours, textures, styles, words, shapes, add/remove, an edit that did not
  happen, redundancy); P0 on the primary edit, P1 on a secondary edit, on an untouched element (table 8's
  "bag to red") or for a global tone, background or style change that did not happen (row 5); P2 for
  repeated, no-op or vague wording (row 7).

Rows 6 (information leakage) and 8 (identical images) need the images themselves; the set leaves them out.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from editcaption.eval.human import cohen_kappa
from editcaption.records import RecordError
from editcaption.world.rule_judge import RuleJudge

LABELS_PATH = Path(__file__).resolve().parent.parent / "assets" / "judge_labels.jsonl"


def load_labels(path: str | Path = LABELS_PATH) -> list[dict]:
    """The hand-labelled rows: id, pair, changes, instruction, type, severity ("" for clean), table6_row, note."""
    rows = []
    with Path(path).open(encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RecordError(f"not JSON ({exc.msg})", file=path, row=line_no) from None
            if not isinstance(row, dict):
                raise RecordError("expected a JSON object", file=path, row=line_no)
            missing = sorted({"id", "changes", "instruction", "type", "severity"} - set(row))
            if missing:
                raise RecordError("missing field", file=path, row=line_no, field=", ".join(missing))
            rows.append(row)
    return rows


def judged_labels(rows: list[dict] | None = None, judge: RuleJudge | None = None) -> pd.DataFrame:
    """One row per labelled instruction: the person's label beside the judge's worst error."""
    judge = judge or RuleJudge()
    out = []
    for row in rows if rows is not None else load_labels():
        result = judge.score(row["changes"], row["instruction"])
        out.append({"id": row["id"], "instruction": row["instruction"], "table6_row": row.get("table6_row", 0),
                    "label_type": row["type"], "label_severity": row["severity"],
                    "judge_type": result["error_type"], "judge_severity": result["severity"],
                    "judge_reason": result["errors"][0]["reason"] if result["errors"] else ""})
    return pd.DataFrame(out)


def agreement(frame: pd.DataFrame | None = None) -> dict:
    """Agreement of the judge with the hand labels: n, exact (type and severity), severity alone, clean vs not,
    P0 vs not, Cohen's kappa on the severity ("" clean, P0, P1, P2), and the ids where they differ."""
    frame = judged_labels() if frame is None else frame
    label_sev, judge_sev = frame["label_severity"], frame["judge_severity"]
    exact = (frame["label_type"] == frame["judge_type"]) & (label_sev == judge_sev)
    return {
        "n": int(len(frame)),
        "exact": round(float(exact.mean()), 4),
        "severity": round(float((label_sev == judge_sev).mean()), 4),
        "clean_vs_error": round(float(((label_sev == "") == (judge_sev == "")).mean()), 4),
        "p0_vs_not": round(float(((label_sev == "P0") == (judge_sev == "P0")).mean()), 4),
        "severity_kappa": round(cohen_kappa(label_sev.replace("", "clean"), judge_sev.replace("", "clean")), 4),
        "disagreements": frame.loc[~exact, "id"].tolist(),
    }
