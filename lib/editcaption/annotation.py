"""Export and import of human work, at the three places where people enter the loop:

- `refinement` (paper §4.1): annotators rewrite each auto-caption into the exact instruction;
- `correction` (§4.2): annotators correct a rejected instruction and label its failure mode
  (orientation | viewpoint | detail) and severity (P0 | P1 | P2), which feed the HAE-DPO margin;
- `evaluation` (§5.2.1, appendix A): annotators give each (pair, model) instruction one label,
  correct | P0 | P1 | P2 (hierarchical: once P0 is found, P1/P2 are not considered), optionally the
  number of the table-6 checklist item and a note.

Each kind is one `SheetSpec` (key columns, given columns, columns to fill with their choices), and one
code path serves all three. `export_sheet` writes the sheet as CSV, JSONL and a Label Studio project
(tasks + labelling config); images go once per pair to `images/<id>_source.png` / `_target.png`.
`import_sheet` reads a filled CSV, JSONL or Label Studio export, checks every row against what was
exported, and stores the accepted rows as a new versioned file `<store>/<kind>/import-NNNN.jsonl`
(never overwriting one) with a line in `manifest.jsonl`. `merged_view` reads all versions, newest
first per row. `simulated_annotator` is a simulation that stands in for people on CPU runs.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import random
import re
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from PIL import Image

from editcaption.records import ERROR_TYPES, SEVERITIES, RecordError

FORMATS = ("csv", "jsonl", "labelstudio")
ON_ERROR = ("raise", "skip")
HUMAN_LABELS = ("correct",) + SEVERITIES
IMAGE_COLUMNS = ("source_image", "target_image")
# Label Studio serves files below LOCAL_FILES_DOCUMENT_ROOT under this URL (local storage).
LABELSTUDIO_LOCAL_FILES = "/data/local-files/?d="
MAX_LISTED_ERRORS = 20

# Appendix A, table 6: checklist item -> (the defect, the levels it may be filed under).
CHECKLIST = {
    1: ("text recognition / editing error", ("P0", "P1")),
    2: ("instruction or attribute error", ("P0", "P1")),
    3: ("instruction or content omission", ("P0", "P1")),
    4: ("viewpoint and spatial relation error", ("P0",)),
    5: ("global visual attribute error", ("P1",)),
    6: ("information leakage (target leak)", ("P1",)),
    7: ("redundant or verbose description", ("P2",)),
    8: ("other undefined issues", ("P2",)),
}


@dataclass(frozen=True)
class Fill:
    """A column the annotator fills: free text (choices=None) or one of `choices`."""

    name: str
    prompt: str
    required: bool = True
    choices: tuple[str, ...] | None = None
    shown: Mapping[str, str] = field(default_factory=dict)  # choice -> text shown in Label Studio


@dataclass(frozen=True)
class SheetSpec:
    """One kind of sheet: what identifies a row, what it shows, what the annotator fills."""

    kind: str
    title: str
    keys: tuple[str, ...]
    texts: tuple[str, ...]  # given texts: shown, and must come back unchanged
    fills: tuple[Fill, ...]
    sources: Mapping[str, tuple[str, ...]]  # sheet column -> input fields tried in order
    kept_text: Mapping[str, str] = field(default_factory=dict)  # text fill -> given text left in it by mistake
    check: Callable[[Mapping[str, str]], list[tuple[str, str]]] | None = None  # cross-field rule

    @property
    def columns(self) -> tuple[str, ...]:
        return self.keys + IMAGE_COLUMNS + self.texts + tuple(f.name for f in self.fills)

    def key(self, row: Mapping[str, Any]) -> str | tuple[str, ...]:
        """The row's identity: the id, or a tuple where several columns make it (id, model)."""
        values = tuple(_cell(row.get(k)) for k in self.keys)
        return values[0] if len(values) == 1 else values


def _check_correction(row: Mapping[str, str]) -> list[tuple[str, str]]:
    if _words(row["corrected_instruction"]) == _words(row["rejected_instruction"]):
        return [("corrected_instruction", "equals the rejected instruction; a preference pair needs a correction")]
    return []


def _check_evaluation(row: Mapping[str, str]) -> list[tuple[str, str]]:
    item = row["checklist_id"]
    if not item:
        return []
    if row["label"] == "correct":
        return [("checklist_id", f"checklist item {item} given for a row labelled 'correct'")]
    levels = CHECKLIST[int(item)][1]
    if row["label"] not in levels:
        return [("checklist_id", f"checklist item {item} ({CHECKLIST[int(item)][0]}) is filed under "
                                 f"{'/'.join(levels)}, not {row['label']}")]
    return []


SPECS = {
    "refinement": SheetSpec(
        kind="refinement",
        title="Rewrite the candidate into the instruction that turns the source image into the target image.",
        keys=("id",),
        texts=("candidate_instruction",),
        fills=(Fill("refined_instruction", "Refined instruction"),),
        sources={"candidate_instruction": ("candidate_instruction", "instruction")},
        kept_text={"refined_instruction": "candidate_instruction"},
    ),
    "correction": SheetSpec(
        kind="correction",
        title="Correct the rejected instruction, then label its main failure mode and its severity.",
        keys=("id",),
        texts=("rejected_instruction",),
        fills=(
            Fill("corrected_instruction", "Corrected instruction"),
            Fill("error_type", "Failure mode", choices=ERROR_TYPES,
                 shown={"orientation": "orientation inconsistency", "viewpoint": "viewpoint ambiguity",
                        "detail": "lack of fine-grained detail"}),
            Fill("severity", "Severity", choices=SEVERITIES,
                 shown={"P0": "P0 critical", "P1": "P1 major", "P2": "P2 minor"}),
        ),
        sources={"rejected_instruction": ("rejected_instruction", "rejected", "instruction")},
        check=_check_correction,
    ),
    "evaluation": SheetSpec(
        kind="evaluation",
        title="Label the instruction: correct, or its most severe defect (once P0 is found, P1/P2 are not considered).",
        keys=("id", "model"),
        texts=("instruction",),
        fills=(
            Fill("label", "Label", choices=HUMAN_LABELS,
                 shown={"correct": "correct", "P0": "P0 critical (unusable)", "P1": "P1 major", "P2": "P2 minor"}),
            Fill("checklist_id", "Checklist item (appendix A, table 6)", required=False,
                 choices=tuple(str(i) for i in CHECKLIST),
                 shown={str(i): f"{i} · {name} ({'/'.join(levels)})" for i, (name, levels) in CHECKLIST.items()}),
            Fill("note", "Note", required=False),
        ),
        sources={"instruction": ("instruction",)},
        check=_check_evaluation,
    ),
}
KINDS = tuple(SPECS)


def sheet_spec(kind: str) -> SheetSpec:
    if kind not in SPECS:
        raise ValueError(f"unknown sheet kind {kind!r}; expected one of {KINDS}")
    return SPECS[kind]


# ----------------------------------------------------------------------------------------- export

def export_sheet(kind: str, rows: Iterable[Mapping[str, Any]], out_dir: str | Path, *,
                 image_dir: str | Path | None = None, formats: Sequence[str] = FORMATS,
                 labelstudio_url_prefix: str = LABELSTUDIO_LOCAL_FILES) -> dict[str, Path]:
    """Write an empty sheet for `kind` to `out_dir` and return the written paths by name.

    `rows` are dicts or a `datasets.Dataset` (edit pairs, preference pairs, or dicts with the sheet's
    columns). Images may be PIL images, `datasets` image dicts or paths (relative ones are resolved
    against `image_dir`); each pair's images are written once as PNG under `out_dir/images/` and the
    sheet refers to them by relative path. Label Studio task images are `labelstudio_url_prefix` +
    that path: with the default, start Label Studio with LOCAL_FILES_SERVING_ENABLED=true and
    LOCAL_FILES_DOCUMENT_ROOT=<out_dir>. Refuses to write over an existing sheet (it may hold human work).
    """
    spec = sheet_spec(kind)
    unknown = sorted(set(formats) - set(FORMATS))
    if unknown:
        raise ValueError(f"unknown formats {unknown}; expected some of {FORMATS}")
    out_dir = Path(out_dir)
    targets = {"csv": {"csv": out_dir / "sheet.csv"}, "jsonl": {"jsonl": out_dir / "sheet.jsonl"},
               "labelstudio": {"labelstudio_tasks": out_dir / "labelstudio_tasks.json",
                               "labelstudio_config": out_dir / "labelstudio_config.xml"}}
    paths = {name: path for fmt in formats for name, path in targets[fmt].items()}
    for path in paths.values():
        if path.exists():
            raise RecordError("a sheet is already here and may hold human work; export to a new folder", file=path)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)

    sheet, images, seen = [], {}, set()
    for index, row in enumerate(rows):
        sheet_row = _sheet_row(spec, row, index, out_dir, Path(image_dir) if image_dir else None, images)
        key = spec.key(sheet_row)
        if key in seen:
            raise RecordError(f"duplicate row {key!r}", row=index, field=spec.keys[0])
        seen.add(key)
        sheet.append(sheet_row)

    if "csv" in formats:
        write_sheet(kind, sheet, paths["csv"])
    if "jsonl" in formats:
        write_sheet(kind, sheet, paths["jsonl"])
    if "labelstudio" in formats:
        tasks = [_labelstudio_task(spec, row, labelstudio_url_prefix) for row in sheet]
        write_atomic(paths["labelstudio_tasks"], json.dumps(tasks, ensure_ascii=False, indent=1))
        write_atomic(paths["labelstudio_config"], labelstudio_config(kind))
    return {**paths, "images": out_dir / "images"}


def _sheet_row(spec: SheetSpec, row: Mapping[str, Any], index: int, out_dir: Path, image_dir: Path | None,
               images: dict[str, tuple[str, str]]) -> dict[str, str]:
    out = {}
    for column in spec.keys + spec.texts:
        value = next((row[f] for f in spec.sources.get(column, (column,)) if row.get(f) is not None), None)
        if not isinstance(value, str):
            found = "missing" if value is None else f"expected text, found {type(value).__name__}"
            raise RecordError(found, row=index, field=column)
        out[column] = value
    if not out["id"]:
        raise RecordError("empty id", row=index, field="id")
    if out["id"] not in images:  # images are written once per pair (evaluation has one row per model)
        pictures = row.get("images") if "source_image" not in row else [row.get(c) for c in IMAGE_COLUMNS]
        if not pictures or len(pictures) != 2:
            raise RecordError("no source_image/target_image (or images=[source, target])", row=index,
                              field="source_image")
        stem = _file_stem(out["id"])
        images[out["id"]] = tuple(
            _save_png(picture, out_dir / "images" / f"{stem}_{side}.png", image_dir, row=index, field=column)
            for picture, side, column in zip(pictures, ("source", "target"), IMAGE_COLUMNS))
    out.update(zip(IMAGE_COLUMNS, images[out["id"]]))
    out.update({f.name: "" for f in spec.fills})
    return {c: out[c] for c in spec.columns}


def _file_stem(pair_id: str) -> str:
    """A file-name-safe stem; ids that needed changes get a hash so two ids never share a file."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", pair_id)
    return safe if safe == pair_id else f"{safe}-{hashlib.sha1(pair_id.encode()).hexdigest()[:8]}"


def _save_png(picture: Any, path: Path, image_dir: Path | None, *, row: int, field: str) -> str:
    """Write one image as PNG; return its path relative to the sheet folder."""
    source = None
    try:
        if isinstance(picture, Image.Image):
            image = picture
        elif isinstance(picture, Mapping) and picture.get("bytes"):
            image = Image.open(io.BytesIO(picture["bytes"]))
        else:
            source = picture.get("path") if isinstance(picture, Mapping) else picture
            if not isinstance(source, (str, os.PathLike)):
                raise RecordError(f"expected an image or a path, found {type(picture).__name__}", row=row, field=field)
            source = Path(source)
            if image_dir is not None and not source.is_absolute():
                source = image_dir / source
            image = Image.open(source)
        image.load()
    except (OSError, ValueError) as err:
        if isinstance(err, RecordError):
            raise
        raise RecordError(f"image does not open: {err}", file=source, row=row, field=field) from err
    if image.mode not in ("1", "L", "LA", "P", "RGB", "RGBA", "I", "I;16"):
        image = image.convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomic(path, buffer.getvalue())
    return f"images/{path.name}"


def write_sheet(kind: str, rows: Iterable[Mapping[str, Any]], path: str | Path, *,
                labelstudio_url_prefix: str = LABELSTUDIO_LOCAL_FILES) -> Path:
    """Write sheet rows (empty or filled) by suffix: .csv, .jsonl, or .json as a Label Studio export
    (one annotation per task holding the filled values). Only the sheet's columns are written."""
    spec, path = sheet_spec(kind), Path(path)
    rows = [{c: _cell(row.get(c)) for c in spec.columns} for row in rows]
    if path.suffix == ".csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=spec.columns)
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    elif path.suffix == ".jsonl":
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    elif path.suffix == ".json":
        text = json.dumps(labelstudio_export(spec, rows, labelstudio_url_prefix), ensure_ascii=False, indent=1)
    else:
        raise ValueError(f"{path}: expected a .csv, .jsonl or .json (Label Studio export) path")
    write_atomic(path, text)
    return path


# ----------------------------------------------------------------------------------- Label Studio

def labelstudio_config(kind: str) -> str:
    """The labelling config: both images side by side, the given text, and the fields to fill."""
    spec = sheet_spec(kind)
    root = ET.Element("View")
    ET.SubElement(root, "Header", value=spec.title)
    pair = ET.SubElement(root, "View", style="display:flex")
    for column, caption in zip(IMAGE_COLUMNS, ("Source image", "Target image")):
        pane = ET.SubElement(pair, "View", style="flex:50%;padding:4px")
        ET.SubElement(pane, "Header", value=caption, size="5")
        ET.SubElement(pane, "Image", name=column, value=f"${column}")
    anchor = spec.texts[0]  # controls are attached to the given text
    for column in spec.texts:
        ET.SubElement(root, "Header", value=column.replace("_", " ").capitalize(), size="5")
        ET.SubElement(root, "Text", name=column, value=f"${column}")
    for fill in spec.fills:
        ET.SubElement(root, "Header", value=fill.prompt, size="5")
        required = {"required": "true"} if fill.required else {}
        if fill.choices is None:
            ET.SubElement(root, "TextArea", name=fill.name, toName=anchor, editable="true", maxSubmissions="1",
                          rows="3", **required)
        else:
            choices = ET.SubElement(root, "Choices", name=fill.name, toName=anchor, choice="single",
                                    showInline="true", **required)
            for value in fill.choices:
                shown = fill.shown.get(value, value)
                attrs = {"value": shown} if shown == value else {"value": shown, "alias": value}
                ET.SubElement(choices, "Choice", **attrs)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"


def _labelstudio_task(spec: SheetSpec, row: Mapping[str, str], url_prefix: str) -> dict:
    data = {c: row[c] for c in spec.keys + spec.texts}
    data.update({c: url_prefix + row[c] for c in IMAGE_COLUMNS})
    return {"data": data}


def labelstudio_export(spec: SheetSpec, rows: Sequence[Mapping[str, str]], url_prefix: str) -> list[dict]:
    """Filled rows in Label Studio's export JSON: tasks with one annotation whose result holds a
    `textarea` ({"text": [...]}) or `choices` ({"choices": [...]}) item per filled field."""
    tasks = []
    for number, row in enumerate(rows, start=1):
        result = [{"id": f"{number}-{f.name}", "from_name": f.name, "to_name": spec.texts[0], "origin": "manual",
                   "type": "textarea" if f.choices is None else "choices",
                   "value": {"text": [row[f.name]]} if f.choices is None else {"choices": [row[f.name]]}}
                  for f in spec.fills if row[f.name]]
        annotation = {"id": number, "result": result, "was_cancelled": False, "ground_truth": False, "task": number}
        tasks.append({"id": number, **_labelstudio_task(spec, row, url_prefix), "annotations": [annotation]})
    return tasks


# ----------------------------------------------------------------------------------------- import

class SheetImportError(RecordError):
    """A filled sheet with problems; `errors` holds one RecordError per problem (file, row, field)."""

    def __init__(self, file: Path, errors: list[RecordError], n_rows: int):
        listed = "\n".join(f"  {e}" for e in errors[:MAX_LISTED_ERRORS])
        more = f"\n  ... and {len(errors) - MAX_LISTED_ERRORS} more" if len(errors) > MAX_LISTED_ERRORS else ""
        super().__init__(f"{len(errors)} problems in {n_rows} rows; nothing was imported "
                         f"(on_error='skip' keeps the valid rows):\n{listed}{more}", file=file)
        self.errors = errors


@dataclass
class ImportResult:
    """What one import read, kept and rejected, and where the kept rows were stored."""

    kind: str
    source: Path
    format: str  # csv | jsonl | labelstudio
    stored: Path | None  # the new versioned file; None when no row was accepted
    rows: list[dict]  # accepted rows, as stored
    errors: list[RecordError]  # one per problem in the rejected rows
    n_read: int
    n_rejected: int
    missing: list  # keys of exported rows this file does not hold
    ignored_columns: list[str]

    @property
    def n_accepted(self) -> int:
        return len(self.rows)


def import_sheet(kind: str, path: str | Path, *, expected: str | Path | Iterable[Mapping[str, Any]],
                 store_dir: str | Path, on_error: str = "raise", annotator: str = "",
                 refuse: Mapping[Any, str] | None = None) -> ImportResult:
    """Read a filled sheet (CSV, JSONL or Label Studio export JSON), check every row against
    `expected` (the exported sheet: its folder, its .jsonl/.csv, or its rows), and store the accepted
    rows as a new `store_dir/<kind>/import-NNNN.jsonl`.

    Row problems (unknown or duplicate id, changed given text, empty required value, invalid choice,
    inconsistent checklist item) are collected: on_error="raise" raises one SheetImportError listing
    them and stores nothing; on_error="skip" stores the valid rows and reports the rest. A file that
    cannot be read or lacks a column always raises. Given columns (images, texts) are stored as
    exported; only the filled columns come from the file. `refuse` maps row keys that may not be
    imported (e.g. items this annotator already labelled in an earlier import) to the reason.
    """
    spec = sheet_spec(kind)
    refuse = refuse or {}
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    path = Path(path)
    wanted = _expected_rows(spec, expected)
    raw = _read_bytes(path)
    fmt, records, columns = _parse(spec, path, raw)
    known = set(spec.columns)
    ignored = sorted(c for c in columns if c not in known)

    known_ids = {_cell(r[spec.keys[0]]) for r in wanted.values()}
    counts: dict[Any, list[int]] = {}
    for line, row, _ in records:
        if row is not None:
            counts.setdefault(spec.key(row), []).append(line)

    accepted, errors, rejected = [], [], 0
    for line, row, problems in records:
        problems = list(problems)
        if row is not None:
            clean, found = _check_row(spec, row, wanted, counts, known_ids)
            problems += found
            if spec.key(row) in refuse:
                problems.append((spec.keys[-1], refuse[spec.key(row)]))
        if problems:
            rejected += 1
            errors += [RecordError(message, file=path, row=line, field=name) for name, message in problems]
        else:
            accepted.append({**clean, "annotator": annotator})
    if errors and on_error == "raise":
        raise SheetImportError(path, errors, len(records))

    missing = sorted(set(wanted) - set(counts), key=str)
    stored = None
    if accepted:
        folder = Path(store_dir) / kind
        stored = _store_new_version(folder, accepted)
        _append_line(folder / "manifest.jsonl", {
            "import": stored.name, "source": str(path.resolve()), "format": fmt,
            "sha256": hashlib.sha256(raw).hexdigest(), "imported_at": datetime.now(timezone.utc).isoformat(),
            "annotator": annotator, "rows_read": len(records), "accepted": len(accepted),
            "rejected": rejected, "missing": len(missing)})
    return ImportResult(kind=kind, source=path, format=fmt, stored=stored, rows=accepted, errors=errors,
                        n_read=len(records), n_rejected=rejected, missing=missing, ignored_columns=ignored)


def sheet_already_exported(out_dir: str | Path, column: str, wanted: Mapping[str, str], mismatch: str) -> bool:
    """True when out_dir holds a sheet for exactly the ids and `column` texts in `wanted` (reuse it: it may hold a
    person's work); False when it holds none; a sheet for other rows is refused ("`mismatch` is here"), naming the file."""
    sheet = Path(out_dir) / "sheet.jsonl"
    if not sheet.exists():
        return False
    if {row["id"]: row[column] for row in read_sheet(sheet)} != dict(wanted):
        raise RecordError(f"{mismatch} is here; use a new run_name or move the folder "
                          "(it may hold human work)", file=sheet)
    return True


def read_sheet(path: str | Path) -> list[dict]:
    """The rows of a sheet written by `export_sheet`/`write_sheet` (.csv or .jsonl), as dicts."""
    path = Path(path)
    fmt, records, _ = _parse(None, path, _read_bytes(path))
    if fmt == "labelstudio":
        raise RecordError("read_sheet reads .csv or .jsonl sheets; Label Studio exports go to import_sheet", file=path)
    for line, _, problems in records:
        if problems:
            name, message = problems[0]
            raise RecordError(message, file=path, row=line, field=name)
    return [row for _, row, _ in records]


def _expected_rows(spec: SheetSpec, expected) -> dict:
    if isinstance(expected, (str, os.PathLike)):
        expected = Path(expected)
        if expected.is_dir():
            expected = expected / "sheet.jsonl" if (expected / "sheet.jsonl").exists() else expected / "sheet.csv"
        rows = read_sheet(expected)
    else:
        rows = list(expected)
    index = {}
    for number, row in enumerate(rows, start=1):
        for column in spec.keys + spec.texts:
            if column not in row:
                raise RecordError("expected rows lack this column", row=number, field=column)
        index[spec.key(row)] = row
    return index


def _read_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise RecordError("no such file", file=path)
    try:
        return path.read_bytes()
    except OSError as err:
        raise RecordError(f"cannot read: {err}", file=path) from err


Record = tuple[int, "dict | None", list]  # (line or task number, row, problems as (field, message))


def _parse(spec: SheetSpec | None, path: Path, raw: bytes) -> tuple[str, list[Record], list[str]]:
    """Decode a filled file into rows keyed by sheet column; format by suffix, else by content."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise RecordError(f"not UTF-8 text ({err.reason} at byte {err.start})", file=path) from err
    if not text.strip():
        raise RecordError("empty file", file=path)
    start = text.lstrip()[0]
    fmt = {".csv": "csv", ".jsonl": "jsonl", ".json": "labelstudio"}.get(
        path.suffix.lower(), {"[": "labelstudio", "{": "jsonl"}.get(start, "csv"))
    if fmt == "csv":
        records, columns = _parse_csv(path, text)
    elif fmt == "jsonl":
        records = _parse_jsonl(text)
        columns = sorted({c for _, row, _ in records if row for c in row})
    else:
        if spec is None:
            return fmt, [], []
        records, columns = _parse_labelstudio(spec, path, text)
    if spec is not None and fmt == "csv":
        required = spec.keys + spec.texts + tuple(f.name for f in spec.fills if f.required)
        for column in required:
            if column not in columns:
                raise RecordError(f"missing column (the header has {columns})", file=path, row=1, field=column)
    return fmt, records, columns


def _parse_csv(path: Path, text: str) -> tuple[list[Record], list[str]]:
    first = text.splitlines()[0]
    delimiter = ";" if first.count(";") > first.count(",") else ","  # spreadsheets in some locales write ';'
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    header = [c.strip() for c in next(reader)]
    duplicates = sorted({c for c in header if header.count(c) > 1})
    if duplicates:
        raise RecordError("column appears twice in the header", file=path, row=1, field=duplicates[0])
    records, end = [], reader.line_num
    while True:
        line = end + 1
        try:
            cells = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            raise RecordError(f"CSV syntax: {err}", file=path, row=line) from err
        end = reader.line_num
        if not any(c.strip() for c in cells):
            continue
        if len(cells) > len(header):
            records.append((line, None, [(None, f"{len(cells)} cells for {len(header)} columns")]))
            continue
        records.append((line, dict(zip(header, cells + [""] * (len(header) - len(cells)))), []))
    return records, header


def _parse_jsonl(text: str) -> list[Record]:
    records = []
    for line, content in enumerate(text.splitlines(), start=1):
        if not content.strip():
            continue
        try:
            row = json.loads(content)
        except json.JSONDecodeError as err:
            records.append((line, None, [(None, f"not JSON: {err.msg} at column {err.colno}")]))
            continue
        if not isinstance(row, dict):
            records.append((line, None, [(None, f"expected a JSON object, found {type(row).__name__}")]))
        else:
            records.append((line, row, []))
    return records


def _parse_labelstudio(spec: SheetSpec, path: Path, text: str) -> tuple[list[Record], list[str]]:
    """Rows from a Label Studio JSON export: task data + the newest non-cancelled annotation's results."""
    try:
        tasks = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"not JSON: {err.msg} at column {err.colno}", file=path, row=err.lineno) from err
    if not isinstance(tasks, list):
        raise RecordError("expected a Label Studio export: a JSON list of tasks", file=path)
    fills = {f.name: f for f in spec.fills}
    records, columns = [], set()
    for number, task in enumerate(tasks, start=1):
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            records.append((number, None, [("data", "not a Label Studio task (no 'data' object)")]))
            continue
        row = {c: v for c, v in task["data"].items() if c not in IMAGE_COLUMNS}
        problems = []
        done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if done:
            _, _, latest = max((a.get("updated_at") or a.get("created_at") or "", i, a) for i, a in enumerate(done))
            for item in latest.get("result") or []:
                name = item.get("from_name")
                if name not in fills:
                    columns.add(str(name))
                    continue
                values = (item.get("value") or {}).get("text" if fills[name].choices is None else "choices") or []
                if len(values) > 1:
                    problems.append((name, f"{len(values)} values {values}; expected one"))
                row[name] = values[0] if values else ""
        columns.update(row)
        records.append((number, row, problems))
    return records, sorted(columns)


def _check_row(spec: SheetSpec, row: Mapping[str, Any], wanted: Mapping, counts: Mapping,
               known_ids: set[str]) -> tuple[dict, list]:
    """The row as it will be stored (given columns from the export), and its problems as (field, message)."""
    problems = []
    key = spec.key(row)
    for column in spec.keys:
        if not _cell(row.get(column)):
            problems.append((column, "empty" if column in row else "missing"))
    if problems:
        return {}, problems
    if key not in wanted:
        column = spec.keys[0] if _cell(row[spec.keys[0]]) not in known_ids else spec.keys[-1]  # id or model
        return {}, [(column, f"unknown {key!r}: not in the exported sheet")]
    if len(counts[key]) > 1:
        problems.append((spec.keys[0], f"{key!r} appears {len(counts[key])} times in this file (rows {counts[key]})"))
    given = wanted[key]
    clean = {c: _cell(given[c]) for c in spec.keys + spec.texts}
    clean.update({c: _cell(given.get(c)) for c in IMAGE_COLUMNS})
    for column in spec.texts:
        if column not in row:
            problems.append((column, "missing"))
        elif _words(_cell(row[column])) != _words(clean[column]):
            problems.append((column, f"changed: exported {clean[column]!r}, found {_cell(row[column])!r}; "
                                     "the given text must come back unchanged"))
    for fill in spec.fills:
        value = row.get(fill.name)
        if value is not None and not isinstance(value, (str, int)):
            problems.append((fill.name, f"expected text, found {type(value).__name__}"))
            continue
        value = _cell(value).strip()
        if fill.choices is not None and value:
            canonical = {c.lower(): c for c in fill.choices}.get(value.lower())
            if canonical is None:
                problems.append((fill.name, f"invalid choice {value!r}; expected one of {fill.choices}"))
            value = canonical or value
        if fill.required and not value:
            problems.append((fill.name, "missing" if fill.name not in row else "empty: the annotator left it blank"))
        clean[fill.name] = value
    if not problems and spec.check is not None:
        problems += spec.check(clean)
    return clean, problems


def _cell(value: Any) -> str:
    return "" if value is None else str(value)


def _words(text: str) -> str:
    """Text compared by words: spreadsheet tools may change spacing and line ends, not words."""
    return " ".join(text.split())


# ------------------------------------------------------------------------------------------ store

_VERSION = re.compile(r"import-(\d{4,})\.jsonl")


def _versions(folder: Path) -> list[tuple[int, Path]]:
    found = [(int(m.group(1)), p) for p in folder.glob("import-*.jsonl") if (m := _VERSION.fullmatch(p.name))]
    return sorted(found)


def _store_new_version(folder: Path, rows: list[dict]) -> Path:
    """Write rows as the next import-NNNN.jsonl; an existing version is never replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
    while True:
        number = max((n for n, _ in _versions(folder)), default=0) + 1
        path = folder / f"import-{number:04d}.jsonl"
        if write_atomic(path, text, exclusive=True):
            return path


def write_atomic(path: Path, content: str | bytes, *, exclusive: bool = False) -> bool:
    """Write via a temp file in the same folder, then rename (replace) or hard-link (exclusive: never
    replaces; returns False if `path` already exists)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if not exclusive:
            os.replace(temp, path)
            return True
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
        return True
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def _append_line(path: Path, record: dict) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
        out.flush()
        os.fsync(out.fileno())


def merged_view(kind: str, store_dir: str | Path, *, annotator: str | None = None) -> dict:
    """All imports of `kind` merged, the newest import winning per row; each row says in `import`
    which file it came from. Keys are ids ((id, model) for evaluation). `annotator` keeps one person's rows."""
    spec = sheet_spec(kind)
    merged = {}
    for _, path in _versions(Path(store_dir) / kind):
        for line, content in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            try:
                row = json.loads(content)
            except json.JSONDecodeError as err:
                raise RecordError(f"not JSON: {err.msg}", file=path, row=line) from err
            if annotator is None or row.get("annotator") == annotator:
                merged[spec.key(row)] = {**row, "import": path.name}
    return merged


# ------------------------------------------------------------------------------ simulated people

def simulated_annotator(kind: str, sheet_rows: Iterable[Mapping[str, Any]], *, truth: Mapping,
                        residual_error_rate: float = 0.0, seed: int = 0) -> list[dict]:
    """SIMULATED ANNOTATOR, standing in for human annotators on CPU runs and in tests; it is not
    human work. It fills each sheet row from `truth` (key -> the correct value: the instruction for
    refinement, the label for evaluation, or a dict / tuple of the required fill columns in order,
    e.g. (corrected_instruction, error_type, severity) for correction) and, with probability
    `residual_error_rate` per row, leaves one residual mistake: a text fill keeps the given candidate,
    or a choice gets another value. Each row records its mistake in `simulated_mistake` ("" if none);
    `write_sheet` leaves that column out, so the filled file goes through `import_sheet` like a human one.
    """
    spec = sheet_spec(kind)
    if not 0.0 <= residual_error_rate <= 1.0:
        raise ValueError(f"residual_error_rate must be in [0, 1], got {residual_error_rate}")
    required = [f for f in spec.fills if f.required]
    rng = random.Random(seed)
    filled_rows = []
    for number, row in enumerate(sheet_rows, start=1):
        key = spec.key(row)
        if key not in truth:
            raise RecordError(f"no ground truth for {key!r}", row=number, field=spec.keys[0])
        answer = truth[key]
        if isinstance(answer, Mapping):
            answer = dict(answer)
        elif isinstance(answer, (tuple, list)) and len(answer) == len(required):
            answer = {f.name: value for f, value in zip(required, answer)}
        elif isinstance(answer, str) and len(required) == 1:
            answer = {required[0].name: answer}
        else:
            raise RecordError(f"truth must give {[f.name for f in required]}, found {answer!r}", row=number,
                              field=required[0].name)
        filled = {c: _cell(row.get(c)) for c in spec.columns}
        filled.update({f.name: _cell(answer.get(f.name)) for f in spec.fills})
        filled["simulated_mistake"] = ""
        if rng.random() < residual_error_rate:
            mistakes = _possible_mistakes(spec, filled)
            if mistakes:
                name, wrong, description = rng.choice(mistakes)
                filled.update({f.name: "" for f in spec.fills if not f.required})  # keep the row consistent
                filled[name] = wrong
                filled["simulated_mistake"] = description
        filled_rows.append(filled)
    return filled_rows


def _possible_mistakes(spec: SheetSpec, filled: Mapping[str, str]) -> list[tuple[str, str, str]]:
    options = []
    for fill in spec.fills:
        if not fill.required:
            continue
        correct = filled[fill.name]
        if fill.choices is None:
            given = spec.kept_text.get(fill.name)
            if given and _words(filled[given]) != _words(correct):
                options.append((fill.name, filled[given], f"{fill.name}: kept the {given}"))
        else:
            options += [(fill.name, c, f"{fill.name}: {c} instead of {correct}") for c in fill.choices if c != correct]
    return options
