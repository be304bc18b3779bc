"""Real image-editing datasets, read in their own schemas and mapped to edit pairs.

Every loader returns a `datasets.Dataset` with exactly `records.EDIT_PAIR_FEATURES`. A dataset can be
given as a local path (one parquet file, a folder of parquet shards such as a downloaded hub repo, or a
`save_to_disk` folder) or as a hub name, read with `datasets.load_dataset(name, split=...)`.

Mappings (the columns are those of the public dataset cards):
- HQ-Edit (`UCSC-VLAA/HQ-Edit`, split train): input (source description), input_image, edit,
  inverse_edit, output (target description), output_image. id = "hq-edit-<row index in the split>";
  instruction = gt.primary_changes[0] = edit; gt.overall = both descriptions; category and edit_type
  are "" (the dataset has no type labels); inverse_edit is not used.
- ByteMorph-Bench (`ByteDance-Seed/BM-Bench`, split test): edit_type, image_id, src_img, tgt_img,
  edit_prompt, edit_prompt_rewrite_instruction, src_img_caption, tgt_img_caption. id =
  "<edit_type>-<image_id>"; category = structural; edit_type normalised to one of BM_BENCH_EDIT_TYPES;
  instruction = edit_prompt; gt.primary_changes = [the rewritten instruction, else edit_prompt];
  gt.overall = both captions.
- MagicBrush (`osunlp/MagicBrush`, splits train/dev): img_id, turn_index, source_img, mask_img,
  instruction, target_img. id = "<img_id>-<turn_index>"; instruction = gt.primary_changes[0];
  category and edit_type are ""; the mask is not used.
- One's own pairs (`load_own_pairs`): a JSONL manifest or a folder of <id>/source.* + <id>/target.*.

Images are checked by decoding them fully, converted to RGB (and EXIF-rotated) where needed, and kept
at their own size: the processor resizes. Sampling happens before images are read, so drawing the
paper's 500 HQ-Edit pairs reads 500 rows, not the whole split.

Bad input: a missing or mistyped column, or a path that is neither a dataset nor a hub name, always
raises `RecordError`. A bad row (an image that does not decode, a missing image file, an empty
instruction, a duplicate id, a JSONL line that is not a pair) raises `RecordError` naming the file,
row and field with on_error="raise" (the default); with on_error="skip" it is left out and counted.
Either way the dataset carries a `LoadReport` (origin, row counts, skipped rows, notes) as JSON in
`ds.info.description`; read it back with `load_report(ds)`.
"""
from __future__ import annotations

import bisect
import io
import json
import logging
import numbers
import os
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import datasets
import numpy as np
import pyarrow.parquet as pq
from PIL import Image, ImageOps

from editcaption.records import (
    CATEGORIES,
    EDIT_PAIR_FEATURES,
    GT_FEATURES,
    RecordError,
    empty_gt,
    load_pairs,
    validate_pair,
)

log = logging.getLogger(__name__)

BENCHMARKS = ("hq-edit", "bm-bench", "magicbrush", "own", "synthetic")
ON_ERROR = ("raise", "skip")

# The paper evaluates on 500 randomly drawn HQ-Edit pairs (§5.1.1).
HQ_EDIT_PAPER_N = 500

# ByteMorph-Bench's five motion categories, normalised (the card lists Camera Zoom, Camera Motion,
# Object Motion, Human Motion, Interaction; its demo folders spell them 0_camera_zoom ... 4_interaction).
BM_BENCH_EDIT_TYPES = ("camera_zoom", "camera_motion", "object_motion", "human_motion", "interaction")
_BM_ALIASES = {"camera_move": "camera_motion", "human_object_interaction": "interaction"}

# The paper's taxonomy (§3.1) as exact snake_case edit types -> category; anything else maps to "".
EDIT_TYPE_CATEGORY = {
    **dict.fromkeys(("add_object", "remove_object", "replace_object", "background", "background_change"),
                    "semantic"),
    **dict.fromkeys(("color", "color_change", "style", "style_transfer", "tone", "tone_transfer",
                     "material", "material_change"), "stylistic"),
    **dict.fromkeys(("view_change", "motion_change", "portrait_change", "text", "text_modification",
                     "hybrid") + BM_BENCH_EDIT_TYPES, "structural"),
}

_SPLIT_NAMES = ("train", "dev", "validation", "val", "test")
_SPLIT_FILE = re.compile(rf"^({'|'.join(_SPLIT_NAMES)})[-_.]")
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_OWN_KEYS = {"id", "source", "target", "instruction", "gt", "edit_type", "category"}
_EXIF_ORIENTATION = 0x0112


@dataclass
class LoadReport:
    """What a loader read: kept in `ds.info.description` as JSON."""

    source: str  # dataset name: hq-edit, bm-bench, magicbrush, own, synthetic
    origin: str  # the path or hub name read
    split: str | None = None
    rows_in_split: int = 0  # rows available before sampling
    rows_read: int = 0  # rows looked at (after sampling)
    rows_kept: int = 0
    sample: dict | None = None  # {"n": ..., "seed": ...} when sampled
    skipped: list[dict] = field(default_factory=list)  # {"row", "field", "error"} per skipped row
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps({"load_report": asdict(self)}, ensure_ascii=False)


def load_report(ds: datasets.Dataset) -> LoadReport | None:
    """The LoadReport a loader attached to `ds`, or None if `ds` was not made by these loaders."""
    try:
        data = json.loads(ds.info.description or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(data, dict) or "load_report" not in data:
        return None
    return LoadReport(**data["load_report"])


def _sample_indices(num_rows: int, n: int, seed: int) -> list[int]:
    """The first n positions of a seeded permutation (so a smaller sample is a prefix of a larger one)."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
        raise ValueError(f"sample size must be a non-negative int, got {n!r}")
    order = np.random.default_rng(seed).permutation(num_rows)
    if n >= num_rows:
        log.info("sample: n=%d >= %d rows, so all rows are taken (in a seeded order)", n, num_rows)
    return order[:int(n)].tolist()


def sample(ds: datasets.Dataset, n: int, seed: int = 0) -> datasets.Dataset:
    """Seeded sample of n rows without replacement; n >= len(ds) gives all rows in a seeded order."""
    out = ds.select(_sample_indices(len(ds), n, seed))
    report = load_report(out)
    if report is not None:
        report.sample, report.rows_kept = {"n": n, "seed": seed}, len(out)
        out.info.description = report.to_json()
    return out


def category_for(edit_type: str) -> str:
    """The category of a known edit type (EDIT_TYPE_CATEGORY), else ""."""
    return EDIT_TYPE_CATEGORY.get(_snake(edit_type).replace("colour", "color"), "")


def normalize_bm_edit_type(value: str) -> str:
    """ByteMorph-Bench edit_type in any spelling ("Camera Zoom", "0_camera_zoom", ...) -> "camera_zoom"."""
    key = re.sub(r"^\d+_", "", _snake(value))
    key = _BM_ALIASES.get(key, key)
    return next((known for known in BM_BENCH_EDIT_TYPES if key.startswith(known)), key)


def _snake(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")


# --- reading a split: parquet files read lazily, or a `datasets.Dataset` -------------------------

class _ParquetTable:
    """One split stored as parquet files; only the sampled rows and the needed columns are read."""

    def __init__(self, files: list[Path]):
        self.files = files
        self.origin = str(files[0]) if len(files) == 1 else f"{files[0].parent} ({len(files)} parquet files)"
        self.base_dir = files[0].parent
        schema = pq.read_schema(files[0])
        self.features = datasets.Features.from_arrow_schema(schema)
        self._groups: list[tuple[int, int]] = []  # (file index, row group) in row order
        self._starts: list[int] = []  # first global row of each group
        total = 0
        for f, path in enumerate(files):
            meta = pq.ParquetFile(path).metadata
            if f and pq.read_schema(path).names != schema.names:
                raise RecordError(f"columns differ from those of {files[0].name}", file=path)
            for g in range(meta.num_row_groups):
                self._groups.append((f, g))
                self._starts.append(total)
                total += meta.row_group(g).num_rows
        self.num_rows = total

    def rows(self, indices: list[int], columns: list[str]) -> Iterator[tuple[int, str, dict]]:
        wanted: dict[int, list[tuple[int, int]]] = defaultdict(list)  # group -> [(position, local row)]
        for pos, index in enumerate(indices):
            g = bisect.bisect_right(self._starts, index) - 1
            wanted[g].append((pos, index - self._starts[g]))
        found: list[tuple[str, dict] | None] = [None] * len(indices)
        for g, items in sorted(wanted.items()):
            f, group = self._groups[g]
            table = pq.ParquetFile(self.files[f]).read_row_group(group, columns=columns)
            for (pos, _), row in zip(items, table.take([local for _, local in items]).to_pylist()):
                found[pos] = (str(self.files[f]), row)
        for index, (file, row) in zip(indices, found):
            yield index, file, row


class _DatasetTable:
    """One split already loaded as a `datasets.Dataset` (hub download or `save_to_disk` folder)."""

    def __init__(self, ds: datasets.Dataset, origin: str, base_dir: Path | None):
        self.ds, self.origin, self.base_dir = ds, origin, base_dir
        self.features, self.num_rows = ds.features, len(ds)

    def rows(self, indices: list[int], columns: list[str]) -> Iterator[tuple[int, str, dict]]:
        raw = self.ds.select_columns(columns).with_format("arrow")  # images stay {"bytes", "path"}
        for start in range(0, len(indices), 256):
            chunk = indices[start:start + 256]
            for index, row in zip(chunk, raw[chunk].to_pylist()):
                yield index, self.origin, row


def _open_split(path_or_name: str | Path, split: str) -> _ParquetTable | _DatasetTable:
    """A local parquet file/folder, a `save_to_disk` folder, or a hub dataset name."""
    path = Path(path_or_name)
    if path.is_file():
        if path.suffix != ".parquet":
            raise RecordError("expected a .parquet file, a folder of parquet files or a save_to_disk folder",
                              file=path)
        return _ParquetTable([path])
    if path.is_dir():
        if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
            return _DatasetTable(_from_disk(path, split), str(path), path)
        return _ParquetTable(_split_files(path, split))
    if _HUB_NAME.match(str(path_or_name)) and path.suffix not in (".parquet", ".arrow", ".json", ".jsonl"):
        return _DatasetTable(_from_hub(str(path_or_name), split), f"hub:{path_or_name}", None)
    raise RecordError("no such file or folder (and not a hub dataset name)", file=path)


def _from_disk(path: Path, split: str) -> datasets.Dataset:
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if split not in loaded:
            raise RecordError(f"no split '{split}' (splits: {sorted(loaded)})", file=path)
        return loaded[split]
    return loaded


def _from_hub(name: str, split: str) -> datasets.Dataset:
    try:
        return datasets.load_dataset(name, split=split)
    except Exception as err:  # offline, unknown name, no such split, ...: all end in the same advice
        raise RecordError(
            f"could not load split '{split}' of '{name}' from the Hugging Face Hub "
            f"({type(err).__name__}: {err}). Download the dataset first, e.g. "
            f"`hf download {name} --repo-type dataset --local-dir DIR`, and pass DIR as the local path",
            file=name) from err


def _split_files(folder: Path, split: str) -> list[Path]:
    """The parquet files of `split` in a folder (named <split>-*, or under a <split>/ folder), else all."""
    files = sorted(p for p in folder.rglob("*.parquet")
                   if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not files:
        raise RecordError("no parquet files in folder", file=folder)
    splits = {p: _file_split(p.relative_to(folder), split) for p in files}
    mine = [p for p in files if splits[p] == split]
    if mine:
        return mine
    others = sorted({s for s in splits.values() if s})
    if others:
        raise RecordError(f"no parquet file for split '{split}' (found splits: {others})", file=folder)
    return files


def _file_split(relative: Path, split: str) -> str | None:
    """The split a parquet file's name or folder says it holds, if any."""
    if re.match(rf"{re.escape(split)}[-_.]", relative.name) or split in relative.parts[:-1]:
        return split
    named = _SPLIT_FILE.match(relative.name)
    if named:
        return named.group(1)
    return next((part for part in relative.parts[:-1] if part in _SPLIT_NAMES), None)


# --- column and value checks ---------------------------------------------------------------------

_ACCEPTS = {"string": {"string"}, "int": {"int"}, "image": {"image", "binary", "string"}}


def _kind(feature: Any) -> str:
    if isinstance(feature, datasets.Image):
        return "image"
    if isinstance(feature, dict) and set(feature) == {"bytes", "path"}:
        return "image"  # an image struct written without the `datasets` schema metadata
    if isinstance(feature, datasets.Value):
        dtype = feature.dtype
        if dtype in ("string", "large_string"):
            return "string"
        if dtype.startswith(("int", "uint")):
            return "int"
        if dtype in ("binary", "large_binary"):
            return "binary"
    return repr(feature)


def _check_columns(table: _ParquetTable | _DatasetTable, spec: dict[str, str]) -> None:
    for column, kind in spec.items():
        if column not in table.features:
            raise RecordError(f"missing column '{column}' (columns: {sorted(table.features)})",
                              file=table.origin, field=column)
        found = _kind(table.features[column])
        if found not in _ACCEPTS[kind]:
            raise RecordError(f"column '{column}' has type {found}, expected {kind}", file=table.origin,
                              field=column)


def _text(row: dict, column: str, *, file: str, row_id: Any, required: bool = True) -> str:
    value = row[column]
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RecordError(f"empty '{column}'", file=file, row=row_id, field=column)
        return ""
    if not isinstance(value, str):
        raise RecordError(f"'{column}' must be a string, found {type(value).__name__}", file=file, row=row_id,
                          field=column)
    return value.strip()


def _image(value: Any, *, file: Any, row: Any, field: str, base_dir: Path | None) -> dict:
    """An image cell (bytes, a path, or a {"bytes", "path"} struct) checked and encoded as RGB bytes."""
    where = {"file": file, "row": row, "field": field}
    data, path = None, None
    if isinstance(value, dict):
        data, path = value.get("bytes"), value.get("path")
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
    elif isinstance(value, (str, os.PathLike)):
        path = str(value)
    elif value is not None:
        raise RecordError(f"unsupported image value of type {type(value).__name__}", **where)
    if not data:
        if not path:
            raise RecordError("no image (neither bytes nor a path)", **where)
        full = Path(path) if Path(path).is_absolute() or base_dir is None else base_dir / path
        if not full.is_file():
            raise RecordError(f"image file not found: {full}", **where)
        data, path = full.read_bytes(), str(full)
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()  # a full decode: verify() misses truncated JPEGs
            rotated = im.getexif().get(_EXIF_ORIENTATION, 1) != 1
            if im.mode != "RGB" or rotated:
                data = _png(ImageOps.exif_transpose(im).convert("RGB"))
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        name = f" {path}" if path else ""
        raise RecordError(f"cannot decode image{name}: {err}", **where) from err
    # Bytes only: `datasets.Image` would keep just a path that exists on disk, dropping the RGB bytes.
    return {"bytes": bytes(data), "path": None}


def _png(im: Image.Image) -> bytes:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    return buffer.getvalue()


def _descriptions(source: str, target: str) -> str:
    if not source and not target:
        return ""
    return f"Source image: {source}\nTarget image: {target}"


def _pair(**fields: Any) -> dict:
    """A full edit-pair row in EDIT_PAIR_FEATURES order (changes are only known for synthetic data)."""
    row = {"category": "", "edit_type": "", "instruction": "", "gt": empty_gt(), "changes": [], **fields}
    return {key: row[key] for key in EDIT_PAIR_FEATURES}


# --- the shared loop: build each row, check it, keep or skip it -----------------------------------

def _check_on_error(on_error: str) -> None:
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")


def _collect(source: str, origin: str, builders: Iterable[tuple[Any, Callable[[], dict]]], report: LoadReport,
             on_error: str) -> datasets.Dataset:
    """Run each (row label, builder), check ids are unique, and build the Dataset with its report."""
    pairs: list[dict] = []
    first_row: dict[str, Any] = {}
    for label, build in builders:
        report.rows_read += 1
        try:
            pair = build()
            validate_pair(pair, file=origin, index=label)
            if pair["id"] in first_row:
                raise RecordError(f"duplicate id (first seen at row {first_row[pair['id']]})", file=origin,
                                  row=label, field="id")
        except RecordError as err:
            if on_error == "raise":
                raise
            report.skipped.append({"row": str(err.row), "field": err.field, "error": str(err)})
            continue
        first_row[pair["id"]] = label
        pairs.append(pair)
    report.rows_kept = len(pairs)
    if report.skipped:
        log.warning("%s: skipped %d of %d rows (see load_report(ds).skipped)", source, len(report.skipped),
                    report.rows_read)
    info = datasets.DatasetInfo(description=report.to_json(), features=EDIT_PAIR_FEATURES)
    if not pairs:
        return datasets.Dataset.from_dict({k: [] for k in EDIT_PAIR_FEATURES}, features=EDIT_PAIR_FEATURES,
                                          info=info)
    return datasets.Dataset.from_list(pairs, features=EDIT_PAIR_FEATURES, info=info)


def _load_table(source: str, path_or_name: str | Path, split: str, spec: dict[str, str],
                make_pair: Callable[[dict, int, str, Path | None], dict], n: int | None, seed: int,
                on_error: str, report_notes: Callable[[list[dict]], list[str]] | None = None) -> datasets.Dataset:
    _check_on_error(on_error)
    table = _open_split(path_or_name, split)
    _check_columns(table, spec)
    indices = list(range(table.num_rows)) if n is None else _sample_indices(table.num_rows, n, seed)
    report = LoadReport(source=source, origin=table.origin, split=split, rows_in_split=table.num_rows,
                        sample=None if n is None else {"n": n, "seed": seed})
    builders = ((index, partial(make_pair, row, index, file, table.base_dir))
                for index, file, row in table.rows(indices, list(spec)))
    ds = _collect(source, table.origin, builders, report, on_error)
    if report_notes is not None:
        report.notes.extend(report_notes(ds))
        ds.info.description = report.to_json()
    return ds


# --- the datasets ---------------------------------------------------------------------------------

_HQ_EDIT_COLUMNS = {"input": "string", "input_image": "image", "edit": "string", "output": "string",
                    "output_image": "image"}


def _hq_edit_pair(row: dict, index: int, file: str, base_dir: Path | None) -> dict:
    pair_id = f"hq-edit-{index}"
    edit = _text(row, "edit", file=file, row_id=pair_id)
    source_text = _text(row, "input", file=file, row_id=pair_id, required=False)
    target_text = _text(row, "output", file=file, row_id=pair_id, required=False)
    return _pair(
        id=pair_id, source="hq-edit",
        source_image=_image(row["input_image"], file=file, row=pair_id, field="source_image", base_dir=base_dir),
        target_image=_image(row["output_image"], file=file, row=pair_id, field="target_image", base_dir=base_dir),
        instruction=edit,
        gt={"primary_changes": [edit], "secondary_changes": [], "overall": _descriptions(source_text, target_text)},
    )


def load_hq_edit(path_or_name: str | Path = "UCSC-VLAA/HQ-Edit", split: str = "train", n: int | None = None,
                 seed: int = 0, on_error: str = "raise") -> datasets.Dataset:
    """HQ-Edit as edit pairs; the paper draws n=HQ_EDIT_PAPER_N (500) pairs."""
    return _load_table("hq-edit", path_or_name, split, _HQ_EDIT_COLUMNS, _hq_edit_pair, n, seed, on_error)


_BM_BENCH_COLUMNS = {"edit_type": "string", "image_id": "string", "src_img": "image", "tgt_img": "image",
                     "edit_prompt": "string", "edit_prompt_rewrite_instruction": "string",
                     "src_img_caption": "string", "tgt_img_caption": "string"}


def _bm_bench_pair(row: dict, index: int, file: str, base_dir: Path | None) -> dict:
    label = f"index {index}"
    edit_type = normalize_bm_edit_type(_text(row, "edit_type", file=file, row_id=label))
    pair_id = f"{edit_type}-{_text(row, 'image_id', file=file, row_id=label)}"
    prompt = _text(row, "edit_prompt", file=file, row_id=pair_id)
    rewrite = _text(row, "edit_prompt_rewrite_instruction", file=file, row_id=pair_id, required=False)
    captions = (_text(row, column, file=file, row_id=pair_id, required=False)
                for column in ("src_img_caption", "tgt_img_caption"))
    return _pair(
        id=pair_id, source="bm-bench", category="structural", edit_type=edit_type,
        source_image=_image(row["src_img"], file=file, row=pair_id, field="source_image", base_dir=base_dir),
        target_image=_image(row["tgt_img"], file=file, row=pair_id, field="target_image", base_dir=base_dir),
        instruction=prompt,
        gt={"primary_changes": [rewrite or prompt], "secondary_changes": [], "overall": _descriptions(*captions)},
    )


def _unknown_bm_types(ds: datasets.Dataset) -> list[str]:
    counts = Counter(t for t in ds["edit_type"] if t not in BM_BENCH_EDIT_TYPES)
    if not counts:
        return []
    log.warning("bm-bench: edit_type values outside %s: %s", BM_BENCH_EDIT_TYPES, dict(counts))
    return [f"edit_type values outside {list(BM_BENCH_EDIT_TYPES)} (kept as normalised): {dict(counts)}"]


def load_bytemorph_bench(path_or_name: str | Path = "ByteDance-Seed/BM-Bench", split: str = "test",
                         n: int | None = None, seed: int = 0, on_error: str = "raise") -> datasets.Dataset:
    """ByteMorph-Bench (613 pairs, five motion types) as structural edit pairs."""
    return _load_table("bm-bench", path_or_name, split, _BM_BENCH_COLUMNS, _bm_bench_pair, n, seed, on_error,
                       report_notes=_unknown_bm_types)


_MAGICBRUSH_COLUMNS = {"img_id": "string", "turn_index": "int", "source_img": "image", "instruction": "string",
                       "target_img": "image"}


def _magicbrush_pair(row: dict, index: int, file: str, base_dir: Path | None) -> dict:
    img_id = _text(row, "img_id", file=file, row_id=f"index {index}")
    if row["turn_index"] is None:
        raise RecordError("empty 'turn_index'", file=file, row=f"index {index}", field="turn_index")
    pair_id = f"{img_id}-{row['turn_index']}"
    instruction = _text(row, "instruction", file=file, row_id=pair_id)
    return _pair(
        id=pair_id, source="magicbrush",
        source_image=_image(row["source_img"], file=file, row=pair_id, field="source_image", base_dir=base_dir),
        target_image=_image(row["target_img"], file=file, row=pair_id, field="target_image", base_dir=base_dir),
        instruction=instruction,
        gt={"primary_changes": [instruction], "secondary_changes": [], "overall": ""},
    )


def load_magicbrush(path_or_name: str | Path = "osunlp/MagicBrush", split: str = "dev", n: int | None = None,
                    seed: int = 0, on_error: str = "raise") -> datasets.Dataset:
    """MagicBrush (dev: 528 turns) as edit pairs; id = <img_id>-<turn_index>."""
    return _load_table("magicbrush", path_or_name, split, _MAGICBRUSH_COLUMNS, _magicbrush_pair, n, seed,
                       on_error)


# --- one's own pairs ------------------------------------------------------------------------------

def load_own_pairs(path: str | Path, n: int | None = None, seed: int = 0,
                   on_error: str = "raise") -> datasets.Dataset:
    """One's own pairs: a JSONL manifest, a folder with manifest.jsonl, or a folder of <id>/source.* + target.*.

    A manifest line is {"id", "source", "target"} (image paths relative to the manifest) with optional
    "instruction", "gt" (any of primary_changes, secondary_changes, overall), "edit_type" and "category".
    Other keys (license, notes, ...) are ignored and listed in the report. Without "gt", a non-empty
    instruction is the reference: gt.primary_changes = [instruction]. Without "category", it comes from
    the edit type where that is a known one (`category_for`), else "". Folder pairs have no instruction.
    """
    _check_on_error(on_error)
    path = Path(path)
    if not path.exists():
        raise RecordError("no such file or folder", file=path)
    manifest = path if path.is_file() else path / "manifest.jsonl"
    report = LoadReport(source="own", origin=str(manifest if manifest.is_file() else path))
    ignored: Counter = Counter()
    if manifest.is_file():
        try:
            lines = manifest.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as err:
            raise RecordError(f"not UTF-8 text: {err}", file=manifest) from err
        builders = ((f"line {number}", partial(_own_pair_from_line, line, number, manifest, ignored))
                    for number, line in enumerate(lines, 1) if line.strip())
    else:
        builders = _own_folder_pairs(path, report)
    ds = _collect("own", report.origin, builders, report, on_error)
    report.rows_in_split = report.rows_read
    if ignored:
        report.notes.append(f"ignored keys (not part of an edit pair): {dict(sorted(ignored.items()))}")
    ds.info.description = report.to_json()
    return ds if n is None else sample(ds, n, seed)


def _own_pair_from_line(line: str, number: int, manifest: Path, ignored: Counter) -> dict:
    where = {"file": manifest, "row": f"line {number}"}
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as err:
        raise RecordError(f"not valid JSON ({err.msg} at column {err.colno})", **where) from err
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, found {type(obj).__name__}", **where)
    for key in ("id", "source", "target"):
        if key not in obj:
            raise RecordError(f"missing key '{key}'", field=key, **where)
        if not isinstance(obj[key], str) or not obj[key].strip():
            raise RecordError(f"'{key}' must be a non-empty string", field=key, **where)
    where["row"] = f"line {number} (id {obj['id']})"
    text = {key: _own_str(obj, key, where) for key in ("instruction", "edit_type", "category")}
    if text["category"] and text["category"] not in CATEGORIES:
        raise RecordError(f"category {text['category']!r} not in {CATEGORIES}", field="category", **where)
    ignored.update(set(obj) - _OWN_KEYS)
    return _pair(
        id=obj["id"].strip(), source="own",
        source_image=_image(obj["source"], field="source_image", base_dir=manifest.parent, **where),
        target_image=_image(obj["target"], field="target_image", base_dir=manifest.parent, **where),
        instruction=text["instruction"], edit_type=text["edit_type"],
        category=text["category"] or category_for(text["edit_type"]),
        gt=_own_gt(obj.get("gt"), text["instruction"], where),
    )


def _own_str(obj: dict, key: str, where: dict) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RecordError(f"'{key}' must be a string, found {type(value).__name__}", field=key, **where)
    return value.strip()


def _own_gt(gt: Any, instruction: str, where: dict) -> dict:
    if gt is None:
        return {**empty_gt(), "primary_changes": [instruction] if instruction else []}
    if not isinstance(gt, dict) or not set(gt) <= set(GT_FEATURES):
        raise RecordError(f"gt must be an object with keys among {sorted(GT_FEATURES)}", field="gt", **where)
    out = {**empty_gt(), **gt}
    for key in ("primary_changes", "secondary_changes"):
        if not isinstance(out[key], list) or not all(isinstance(s, str) for s in out[key]):
            raise RecordError(f"gt.{key} must be a list of strings", field="gt", **where)
    if not isinstance(out["overall"], str):
        raise RecordError("gt.overall must be a string", field="gt", **where)
    return out


def _own_folder_pairs(folder: Path, report: LoadReport) -> list[tuple[str, Callable[[], dict]]]:
    """Builders for each <id>/ subfolder that holds source.* or target.* files."""
    builders = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        sources, targets = sorted(sub.glob("source.*")), sorted(sub.glob("target.*"))
        if sources or targets:
            builders.append((sub.name, partial(_own_folder_pair, sub, sources, targets)))
        else:
            report.notes.append(f"ignored folder without source.*/target.*: {sub.name}")
    if not builders:
        raise RecordError("no manifest.jsonl and no <id>/source.* + <id>/target.* subfolders", file=folder)
    return builders


def _own_folder_pair(sub: Path, sources: list[Path], targets: list[Path]) -> dict:
    for found, field_name in ((sources, "source_image"), (targets, "target_image")):
        if len(found) != 1:
            raise RecordError(f"expected one {field_name.split('_')[0]}.* file, found {len(found)}", file=sub,
                              row=sub.name, field=field_name)
    return _pair(id=sub.name, source="own",
                 source_image=_image(sources[0], file=sub, row=sub.name, field="source_image", base_dir=None),
                 target_image=_image(targets[0], file=sub, row=sub.name, field="target_image", base_dir=None))


# --- by name --------------------------------------------------------------------------------------

def load_benchmark(name: str, path_or_name: str | Path | None = None, n: int | None = None, seed: int = 0,
                   split: str | None = None, on_error: str = "raise") -> datasets.Dataset:
    """Load one of BENCHMARKS by name; hub datasets default to their hub name and paper split."""
    hub_loaders = {"hq-edit": load_hq_edit, "bm-bench": load_bytemorph_bench, "magicbrush": load_magicbrush}
    if name in hub_loaders:
        kwargs = {"n": n, "seed": seed, "on_error": on_error}
        if path_or_name is not None:
            kwargs["path_or_name"] = path_or_name
        if split is not None:
            kwargs["split"] = split
        return hub_loaders[name](**kwargs)
    if name not in ("own", "synthetic"):
        raise ValueError(f"unknown benchmark {name!r}; expected one of {BENCHMARKS}")
    if path_or_name is None:
        raise ValueError(f"benchmark {name!r} needs a path")
    if name == "own":
        return load_own_pairs(path_or_name, n=n, seed=seed, on_error=on_error)
    ds = load_pairs(path_or_name)
    return ds if n is None else sample(ds, n, seed)
