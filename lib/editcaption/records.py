"""The data contracts: one edit pair and one preference pair, as `datasets` features.

Every loader (synthetic, HQ-Edit, ByteMorph-Bench, MagicBrush, one's own JSONL) returns rows of
`EDIT_PAIR_FEATURES`; every later stage reads them. `validate_pair` checks one row and raises
`RecordError` naming the file, row and field that is wrong.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping

import datasets
import pandas as pd

from editcaption.rubric import ERROR_TYPES, SEVERITIES

CATEGORIES = ("semantic", "stylistic", "structural")

# One structured change, known exactly for synthetic pairs (what lets the rule judge score
# without an LLM). Empty strings where a field does not apply.
CHANGE_FEATURES = {
    "op": datasets.Value("string"),  # add, remove, replace, background, color, move, mirror, ...
    "object": datasets.Value("string"),  # the object the change acts on ("" for global changes)
    "attribute": datasets.Value("string"),  # color, position, size, brightness, text, ...
    "before": datasets.Value("string"),  # value in the source image
    "after": datasets.Value("string"),  # value in the target image
    "direction": datasets.Value("string"),  # left/right/up/down/in/out/clockwise/... or ""
    "primary": datasets.Value("bool"),  # primary change (True) or secondary (False)
}

GT_FEATURES = {
    "primary_changes": datasets.Sequence(datasets.Value("string")),
    "secondary_changes": datasets.Sequence(datasets.Value("string")),
    "overall": datasets.Value("string"),
}

EDIT_PAIR_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "source": datasets.Value("string"),  # dataset name: synthetic, hq-edit, bm-bench, ...
        "source_image": datasets.Image(),
        "target_image": datasets.Image(),
        "category": datasets.Value("string"),  # one of CATEGORIES
        "edit_type": datasets.Value("string"),  # finer label: add_object, color, mirror, ...
        "instruction": datasets.Value("string"),  # may be "" before captioning
        "gt": GT_FEATURES,
        "changes": [CHANGE_FEATURES],
    }
)

PREFERENCE_FEATURES = datasets.Features(
    {
        "id": datasets.Value("string"),
        "images": datasets.Sequence(datasets.Image()),  # [source, target]
        "prompt": datasets.Value("string"),
        "chosen": datasets.Value("string"),
        "rejected": datasets.Value("string"),
        "error_type": datasets.Value("string"),  # one of ERROR_TYPES
        "severity": datasets.Value("string"),  # one of SEVERITIES
    }
)


class RecordError(ValueError):
    """A row that breaks a data contract; the message names the file, row and field."""

    def __init__(self, message: str, *, file: str | Path | None = None, row: Any = None, field: str | None = None):
        where = []
        if file is not None:
            where.append(f"file {file}")
        if row is not None:
            where.append(f"row {row}")
        if field is not None:
            where.append(f"field '{field}'")
        prefix = ", ".join(where)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file, self.row, self.field = file, row, field


def empty_gt() -> dict:
    return {"primary_changes": [], "secondary_changes": [], "overall": ""}


def make_change(op: str, object: str = "", attribute: str = "", before: str = "", after: str = "",
                direction: str = "", primary: bool = True) -> dict:
    """One structured change with every field present (the Arrow struct needs them all)."""
    return {"op": op, "object": object, "attribute": attribute, "before": before, "after": after,
            "direction": direction, "primary": bool(primary)}


def validate_pair(row: Mapping[str, Any], *, file: str | Path | None = None, index: Any = None) -> None:
    """Raise RecordError if `row` does not follow EDIT_PAIR_FEATURES (images are not decoded)."""
    where = {"file": file, "row": row.get("id", index) if isinstance(row, Mapping) else index}
    for field in EDIT_PAIR_FEATURES:
        if field not in row:
            raise RecordError("missing field", field=field, **where)
    for field in ("id", "source", "category", "edit_type", "instruction"):
        if not isinstance(row[field], str):
            raise RecordError(f"expected str, found {type(row[field]).__name__}", field=field, **where)
    if not row["id"]:
        raise RecordError("empty id", field="id", **where)
    if row["category"] and row["category"] not in CATEGORIES:
        raise RecordError(f"category {row['category']!r} not in {CATEGORIES}", field="category", **where)
    for field in ("source_image", "target_image"):
        if row[field] is None:
            raise RecordError("no image", field=field, **where)
    gt = row["gt"]
    if not isinstance(gt, Mapping) or set(gt) != set(GT_FEATURES):
        raise RecordError(f"gt must have exactly the keys {sorted(GT_FEATURES)}", field="gt", **where)
    for i, change in enumerate(row["changes"] or []):
        missing = set(CHANGE_FEATURES) - set(change)
        if missing:
            raise RecordError(f"change {i} lacks {sorted(missing)}", field="changes", **where)


def validate_preference(row: Mapping[str, Any], *, file: str | Path | None = None, index: Any = None) -> None:
    """Raise RecordError if `row` does not follow PREFERENCE_FEATURES."""
    where = {"file": file, "row": row.get("id", index) if isinstance(row, Mapping) else index}
    for field in PREFERENCE_FEATURES:
        if field not in row:
            raise RecordError("missing field", field=field, **where)
    if row["error_type"] not in ERROR_TYPES:
        raise RecordError(f"error_type {row['error_type']!r} not in {ERROR_TYPES}", field="error_type", **where)
    if row["severity"] not in SEVERITIES:
        raise RecordError(f"severity {row['severity']!r} not in {SEVERITIES}", field="severity", **where)
    for field in ("prompt", "chosen", "rejected"):
        if not isinstance(row[field], str) or not row[field].strip():
            raise RecordError("empty text", field=field, **where)


def pairs_from_rows(rows: Iterable[Mapping[str, Any]], *, file: str | Path | None = None) -> datasets.Dataset:
    """Validate rows and build a Dataset with EDIT_PAIR_FEATURES."""
    rows = list(rows)
    for i, row in enumerate(rows):
        validate_pair(row, file=file, index=i)
    return datasets.Dataset.from_list(rows, features=EDIT_PAIR_FEATURES)


def save_pairs(ds: datasets.Dataset, out_dir: str | Path) -> Path:
    """Write a pairs dataset as `datasets` Arrow files (`load_pairs` reads it back)."""
    out_dir = Path(out_dir)
    ds.save_to_disk(str(out_dir))
    return out_dir


def save_dataset(ds: datasets.Dataset, out_dir: str | Path) -> Path:
    """`save_to_disk` into out_dir (what training reads) and the same rows as `<out_dir>.parquet` beside it
    (images embedded), for pandas, DuckDB or `datasets.load_dataset("parquet", ...)`."""
    out_dir = Path(out_dir)
    ds.save_to_disk(str(out_dir))
    ds.to_parquet(str(out_dir.with_suffix(".parquet")))
    return out_dir


def load_train_split(path: str | Path, what: str) -> datasets.Dataset:
    """A saved `datasets` folder (its 'train' split when it holds a DatasetDict); `what` names it in errors."""
    folder = Path(path)
    if not folder.is_dir():
        raise RecordError(f"{what} folder does not exist", file=folder)
    try:
        ds = datasets.load_from_disk(str(folder))
    except FileNotFoundError as exc:
        raise RecordError(f"not a saved `datasets` folder ({exc})", file=folder) from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" not in ds:
            raise RecordError(f"DatasetDict without a 'train' split (splits: {sorted(ds)})", file=folder)
        ds = ds["train"]
    return ds


def load_pairs(path: str | Path) -> datasets.Dataset:
    """Read a pairs dataset written by `save_pairs` (a folder) or a parquet file."""
    path = Path(path)
    if not path.exists():
        raise RecordError("no such file or folder", file=path)
    if path.is_dir():
        if not (path / "dataset_info.json").exists() and not (path / "state.json").exists():
            raise RecordError("not a saved `datasets` folder (no state.json); write it with save_pairs", file=path)
        ds = datasets.load_from_disk(str(path))
    elif path.suffix == ".parquet":
        ds = datasets.Dataset.from_parquet(str(path))
    else:
        raise RecordError("expected a `datasets` folder or a .parquet file", file=path)
    missing = set(EDIT_PAIR_FEATURES) - set(ds.column_names)
    if missing:
        raise RecordError(f"missing columns {sorted(missing)}", file=path, field=sorted(missing)[0])
    return ds


# ------------------------------------------------------------------------------------ the long table format

# Every table a stage writes (tables 2-5), one row per cell: notebook 08 and the figures read only this.
LONG_COLUMNS = ("table", "model", "benchmark", "metric", "value", "low", "high", "judge", "data")


def missing_value(x) -> bool:
    """True for None and NaN."""
    return x is None or (isinstance(x, float) and math.isnan(x))


def validate_long(rows: pd.DataFrame, source: str = "<long table>") -> pd.DataFrame:
    """Check the LONG_COLUMNS are there and each value is numeric; return the rows in column order."""
    for column in LONG_COLUMNS:
        if column not in rows.columns:
            raise RecordError(f"long table lacks column {column!r} (has {list(rows.columns)})", file=source,
                              field=column)
    for i, value in enumerate(rows["value"]):
        if missing_value(value):
            continue
        try:
            float(value)
        except (TypeError, ValueError):
            raise RecordError(f"value {value!r} is not a number", file=source, row=i, field="value") from None
    return rows[list(LONG_COLUMNS)].reset_index(drop=True)
