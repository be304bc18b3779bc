"""A preference set as the DPO trainer reads it: each row checked against `records.PREFERENCE_FEATURES`
(two images, a chosen and a different rejected answer, a known failure mode and severity), then converted to
TRL's conversational vision rows. Notebook 03 reads back what it writes through `load_preferences`; the
trainer (`train.hae_dpo`) and the reference-margin computation (`train.margin`) read through it too."""
from __future__ import annotations

from pathlib import Path

import datasets
import pyarrow.compute as pc

from editcaption.prompts import build_sft_example
from editcaption.records import PREFERENCE_FEATURES, RecordError, load_train_split, validate_preference

BAD_ROWS = ("error", "skip")  # preference_bad_rows: raise on the first bad row, or leave bad rows out


def preference_errors(dataset, file):
    """Yield (row index, RecordError) for each bad row; a missing column raises RecordError at once."""
    missing = [c for c in PREFERENCE_FEATURES if c not in dataset.column_names]
    if missing:
        raise RecordError(f"missing column(s) {missing}; a preference row has {list(PREFERENCE_FEATURES)}",
                          file=file, field=missing[0])
    n_images = pc.list_value_length(dataset.select_columns(["images"]).with_format("arrow")[:]["images"]).to_pylist()
    texts = dataset.select_columns([c for c in PREFERENCE_FEATURES if c != "images"])
    for index, (row, count) in enumerate(zip(texts, n_images)):
        name = row["id"] if row["id"] is not None else index
        try:
            validate_preference({**row, "id": name, "images": None}, file=file, index=index)
            if count != 2:
                raise RecordError(f"{count} images; a preference row has [source, target]", file=file, row=name,
                                  field="images")
            if row["chosen"].strip() == row["rejected"].strip():
                raise RecordError("rejected is the same text as chosen", file=file, row=name, field="rejected")
        except RecordError as error:
            yield index, error


def to_trl_preferences(dataset):
    """Preference rows → TRL's conversational vision rows (the SFT prompt messages; images stay as they are)."""
    def convert(prompt, chosen, rejected):
        with_chosen = build_sft_example(None, None, chosen, prompt)
        return {"prompt": with_chosen["prompt"], "chosen": with_chosen["completion"],
                "rejected": build_sft_example(None, None, rejected, prompt)["completion"]}

    raw = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    converted = raw.map(convert, input_columns=["prompt", "chosen", "rejected"])
    return converted.cast_column("images", datasets.List(datasets.Image()))


def load_preferences(path: str | Path, *, bad_rows: str = "error"):
    """Read, check and convert a preference `datasets` folder; returns (TRL rows, skipped rows).

    bad_rows="error" raises RecordError naming the file, row and field of the first bad row; "skip" leaves
    the bad rows out (never trained on) and returns them as {row, id, field, error}.
    """
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"preference_bad_rows {bad_rows!r} is not one of {BAD_ROWS}")
    folder = Path(path)
    ds = load_train_split(folder, "preference data")
    skipped = []
    for index, error in preference_errors(ds, folder):
        if bad_rows == "error":
            raise error
        skipped.append({"row": index, "id": error.row, "field": error.field, "error": str(error)})
    if len(skipped) == len(ds):
        raise RecordError(f"all {len(ds)} preference rows are invalid (first: {skipped[0]['error']})", file=folder)
    if skipped:
        bad = {s["row"] for s in skipped}
        ds = ds.select([i for i in range(len(ds)) if i not in bad])
    return to_trl_preferences(ds), skipped
