"""Triplet export: (source image, target image, instruction) written for the editors we fine-tune.

Two layouts, both read back by this module:

- **Step1X-Edit** (`export_step1x`): the fine-tuning format of stepfun-ai/Step1X-Edit (commit 570eba6),
  read from its source:
  * README.md §3.1 and `library/data_configs/step1x_edit.toml`: a data-config TOML whose `[[datasets]]`
    has `edit_dataset = true` and one `[[datasets.subsets]]` with `image_dir` and `metadata_file`;
  * `library/train_util.py`, class `EditDataset`: `metadata_file` is a JSON object mapping each target
    image path to `{"ref_image_path": <source image path>, "caption": <instruction>}`; a key is used as
    a path when it exists (else looked up in `image_dir`), `ref_image_path` must exist as given (so both
    are written absolute), and only `caption`, `tags`, `ref_image_path`, `train_resolution` are read
    from an entry (the `id` we add is ignored by it);
  * `library/config_util.py`, `ConfigSanitizer`: the keys allowed in `[general]`, `[[datasets]]` and
    subsets (`STEP1X_*_KEYS` below are transcribed from it, and the template is checked against them);
  * `library/strategy_step1x.py`: text-encoder outputs are cached next to each target image as
    `<image>_step1x_te.npz`, keyed by the image path only, so every captioner gets its own copy of the
    images (one folder per export) — sharing them would train one captioner on another's cached captions.
- **InstructPix2Pix** (`export_instructpix2pix`): the `imagefolder` layout that diffusers'
  `examples/instruct_pix2pix/train_instruct_pix2pix.py` loads with
  `load_dataset("imagefolder", data_files={"train": <train_data_dir>/**})` and reads through the columns
  `--original_image_column input_image`, `--edit_prompt_column edit_prompt`,
  `--edited_image_column edited_image` (its defaults). `metadata.jsonl` names the images with
  `input_image_file_name` / `edited_image_file_name`, which `datasets`' folder builder turns into the
  image columns `input_image` / `edited_image`; an `id` column is kept for the round trip.

Images given as `datasets`' undecoded {"bytes", "path"} (or a file path) are copied byte for byte; PIL
images are written as PNG (pixel-exact). A bad row (no id, a duplicate id, an empty instruction, a
missing or unreadable image) raises `RecordError` naming the row and field, or with `on_error="skip"` is
left out and listed in the export's `export_report.json`. Same input, same bytes out.
"""
from __future__ import annotations

import io
import json
import logging
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from PIL import Image

from editcaption import paths
from editcaption.records import RecordError

log = logging.getLogger(__name__)

STEP1X_METADATA = "metadata.json"
STEP1X_CONFIG = "dataset_config.toml"
IP2P_METADATA = "metadata.jsonl"
IP2P_COLUMNS = ("input_image", "edit_prompt", "edited_image")
REPORT = "export_report.json"
ON_ERROR = ("raise", "skip")
TRIPLET_FIELDS = ("id", "source_image", "target_image", "instruction")

# Keys Step1X-Edit's ConfigSanitizer (library/config_util.py) accepts for an edit dataset read from a TOML.
STEP1X_SUBSET_KEYS = frozenset({
    "color_aug", "face_crop_aug_range", "flip_aug", "num_repeats", "random_crop", "shuffle_caption", "keep_tokens",
    "keep_tokens_separator", "secondary_separator", "caption_separator", "enable_wildcard", "token_warmup_min",
    "token_warmup_step", "caption_prefix", "caption_suffix", "custom_attributes", "resize_interpolation",
    "caption_dropout_every_n_epochs", "caption_dropout_rate", "caption_tag_dropout_rate",
    "metadata_file", "image_dir", "alpha_mask",
})
STEP1X_DATASET_KEYS = frozenset({
    "batch_size", "bucket_no_upscale", "bucket_reso_steps", "enable_bucket", "max_bucket_reso", "min_bucket_reso",
    "validation_seed", "validation_split", "resolution", "network_multiplier", "resize_interpolation", "edit_dataset",
    "subsets",
}) | (STEP1X_SUBSET_KEYS - {"metadata_file", "image_dir", "alpha_mask"})
STEP1X_GENERAL_KEYS = (STEP1X_DATASET_KEYS - {"subsets"}) | {"caption_extension", "class_tokens", "cache_info"}

_FORMATS = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp"}  # what we copy as is; anything else becomes PNG
_PNG_MODES = {"1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"}


# ------------------------------------------------------------------------------------------ triplets

def image_file_bytes(value: Any, *, row: Any, field: str) -> tuple[bytes, str]:
    """The image's file bytes and extension: encoded bytes are kept, a PIL image becomes PNG."""
    if isinstance(value, Image.Image):
        image = value if value.mode in _PNG_MODES else value.convert("RGB")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue(), ".png"
    data = None
    try:
        if isinstance(value, Mapping) and value.get("bytes"):
            data = bytes(value["bytes"])
        elif isinstance(value, Mapping) and value.get("path"):
            data = Path(value["path"]).read_bytes()
        elif isinstance(value, (str, Path)) and str(value):
            data = Path(value).read_bytes()
    except OSError as err:
        raise RecordError(f"cannot read the image file: {err}", row=row, field=field) from err
    if data is None:
        raise RecordError(f"no image (found {type(value).__name__})", row=row, field=field)
    try:
        with Image.open(io.BytesIO(data)) as probe:
            kind = probe.format
            probe.verify()
    except Exception as err:  # PIL raises several types for a broken file
        raise RecordError(f"not a readable image: {err}", row=row, field=field) from err
    if kind in _FORMATS:
        return data, _FORMATS[kind]
    with Image.open(io.BytesIO(data)) as image:
        return image_file_bytes(image.copy(), row=row, field=field)


def _stem(index: int) -> str:
    """A row's file name: its position in the input. Not the id: `datasets` reads words such as "train" or
    "test" in a file name as a split, and `load_dataset("imagefolder", data_dir=...)` would split the export."""
    return f"{index:07d}"


def _checked(triplets: Iterable[Mapping[str, Any]], on_error: str, skipped: list[dict]) -> Iterator[dict]:
    """Rows one at a time with their image bytes ready to write; bad rows raise or go to `skipped`
    (row, id, field, reason). Streaming: an export of a million triplets holds one row's images at a time."""
    seen: set = set()
    for index, row in enumerate(triplets):
        try:
            yield _check_row(row, index, seen)
        except RecordError as err:
            if on_error == "raise":
                raise
            pair_id = row.get("id") if isinstance(row, Mapping) else None
            skipped.append({"row": index, "id": pair_id, "field": err.field, "reason": str(err)})
    if skipped:
        log.warning("export: skipped %d bad row(s) (first: %s)", len(skipped), skipped[0]["reason"])


def _check_row(row: Any, index: int, seen: set) -> dict:
    if not isinstance(row, Mapping):
        raise RecordError(f"expected a mapping with {TRIPLET_FIELDS}, found {type(row).__name__}", row=index)
    pair_id = row.get("id")
    if not isinstance(pair_id, str) or not pair_id:
        raise RecordError(f"expected a non-empty string id, found {pair_id!r}", row=index, field="id")
    where = f"{index} (id {pair_id})"
    if pair_id in seen:
        raise RecordError("duplicate id", row=where, field="id")
    instruction = row.get("instruction")
    if not isinstance(instruction, str) or not instruction.strip():
        raise RecordError(f"empty instruction ({instruction!r})", row=where, field="instruction")
    source = image_file_bytes(row.get("source_image"), row=where, field="source_image")
    target = image_file_bytes(row.get("target_image"), row=where, field="target_image")
    seen.add(pair_id)
    return {"id": pair_id, "instruction": instruction, "source": source, "target": target, "stem": _stem(index)}


def _write_report(folder: Path, fmt: str, name: str, n_written: int, skipped: list[dict]) -> None:
    report = {"format": fmt, "name": name, "n_rows": n_written + len(skipped), "n_written": n_written,
              "n_skipped": len(skipped), "skipped": skipped}
    (folder / REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def read_report(folder: str | Path) -> dict:
    """The counts and skipped rows an export wrote (`export_report.json`)."""
    path = Path(folder) / REPORT
    if not path.exists():
        raise RecordError("no export report here", file=path)
    return json.loads(path.read_text(encoding="utf-8"))


@contextmanager
def _fresh_folder(folder: Path, marker: str, on_error: str):
    """Create `folder` (refusing a non-empty one that is not an earlier export of this kind); remove what was
    written when the export fails, so a half export is never mistaken for a whole one."""
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    if folder.exists() and any(folder.iterdir()) and not (folder / marker).exists():
        raise FileExistsError(f"{folder} is not empty and holds no {marker}: choose an empty or new folder")
    folder.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


# ----------------------------------------------------------------------------------------- Step1X-Edit

def _toml_string(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML)."""
    return json.dumps(value, ensure_ascii=False)


def step1x_config_text(image_dir: Path, metadata_file: Path, *, resolution: int = 768, batch_size: int = 1,
                       num_repeats: int = 1) -> str:
    """The data-config TOML for one export, from params/step1x/dataset_config.toml."""

    template = (paths.params_dir() / "step1x" / "dataset_config.toml").read_text(encoding="utf-8")
    return template.format(resolution=int(resolution), batch_size=int(batch_size), num_repeats=int(num_repeats),
                           image_dir=_toml_string(str(image_dir)), metadata_file=_toml_string(str(metadata_file)))


def export_step1x(triplets: Iterable[Mapping[str, Any]], out_dir: str | Path, *, name: str, resolution: int = 768,
                  batch_size: int = 1, num_repeats: int = 1, on_error: str = "raise") -> Path:
    """Write `out_dir/<name>/` for Step1X-Edit's fine-tuning; return that folder.

    It holds `target/` and `source/` images, `metadata.json` ({absolute target path: {"ref_image_path":
    absolute source path, "caption": instruction, "id": id}}), `dataset_config.toml` (pass it to
    finetuning.py as --dataset_config) and `export_report.json`."""
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ValueError(f"name must be a plain folder name (letters, digits, . _ -), got {name!r}")
    folder = (Path(out_dir) / name).resolve()
    metadata, skipped = {}, []
    with _fresh_folder(folder, STEP1X_METADATA, on_error):
        (folder / "source").mkdir(exist_ok=True)
        (folder / "target").mkdir(exist_ok=True)
        for row in _checked(triplets, on_error, skipped):
            source = folder / "source" / (row["stem"] + row["source"][1])
            target = folder / "target" / (row["stem"] + row["target"][1])
            source.write_bytes(row["source"][0])
            target.write_bytes(row["target"][0])
            metadata[str(target)] = {"ref_image_path": str(source), "caption": row["instruction"], "id": row["id"]}
        metadata_file = folder / STEP1X_METADATA
        metadata_file.write_text(json.dumps(metadata, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        (folder / STEP1X_CONFIG).write_text(
            step1x_config_text(folder / "target", metadata_file, resolution=resolution, batch_size=batch_size,
                               num_repeats=num_repeats), encoding="utf-8")
        _write_report(folder, "step1x-edit", name, len(metadata), skipped)
    return folder


def _load_toml(path: Path) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise RecordError(f"not valid TOML: {err}", file=path) from err


def check_step1x_config(config: Mapping[str, Any], *, file: str | Path | None = None) -> None:
    """Raise RecordError if a data config has keys Step1X-Edit's ConfigSanitizer would reject for an edit
    dataset, or lacks what EditDataset needs (edit_dataset = true, a metadata_file per subset)."""
    unknown = set(config) - {"general", "datasets"}
    if unknown:
        raise RecordError(f"unknown top-level keys {sorted(unknown)}", file=file, field=sorted(unknown)[0])
    bad = set(config.get("general", {})) - STEP1X_GENERAL_KEYS
    if bad:
        raise RecordError(f"keys not accepted in [general]: {sorted(bad)}", file=file, field=sorted(bad)[0])
    datasets = config.get("datasets") or []
    if not datasets:
        raise RecordError("no [[datasets]]", file=file, field="datasets")
    for i, dataset in enumerate(datasets):
        bad = set(dataset) - STEP1X_DATASET_KEYS
        if bad:
            raise RecordError(f"keys not accepted in [[datasets]]: {sorted(bad)}", file=file, row=i, field=sorted(bad)[0])
        if dataset.get("edit_dataset") is not True:
            raise RecordError("edit_dataset must be true for editing triplets", file=file, row=i, field="edit_dataset")
        subsets = dataset.get("subsets") or []
        if not subsets:
            raise RecordError("no [[datasets.subsets]]", file=file, row=i, field="subsets")
        for subset in subsets:
            bad = set(subset) - STEP1X_SUBSET_KEYS
            if bad:
                raise RecordError(f"keys not accepted in a subset: {sorted(bad)}", file=file, row=i, field=sorted(bad)[0])
            if not isinstance(subset.get("metadata_file"), str):
                raise RecordError("a subset needs metadata_file", file=file, row=i, field="metadata_file")


def read_step1x(path: str | Path, *, decode: bool = False) -> list[dict]:
    """The triplets of a Step1X-Edit export (its folder or its dataset_config.toml), checked as the trainer
    would: the config's keys, every target and reference image present. Images come back as
    {"bytes": None, "path": str} (or PIL images with decode=True)."""
    path = Path(path)
    config_path = path / STEP1X_CONFIG if path.is_dir() else path
    if not config_path.exists():
        raise RecordError("no Step1X-Edit data config", file=config_path)
    config = _load_toml(config_path)
    check_step1x_config(config, file=config_path)
    rows = []
    for dataset in config["datasets"]:
        for subset in dataset["subsets"]:
            metadata_file = Path(subset["metadata_file"])
            if not metadata_file.exists():
                raise RecordError("metadata_file does not exist", file=config_path, field="metadata_file")
            metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
            if not isinstance(metadata, dict):
                raise RecordError("expected a JSON object {target path: {...}}", file=metadata_file)
            for key, entry in metadata.items():
                rows.append(_step1x_row(key, entry, metadata_file, subset.get("image_dir"), decode))
    return rows


def _step1x_row(key: str, entry: Any, metadata_file: Path, image_dir: str | None, decode: bool) -> dict:
    where = {"file": metadata_file, "row": key}
    if not isinstance(entry, dict):
        raise RecordError("expected an object with ref_image_path and caption", **where)
    target = Path(key) if Path(key).exists() or not image_dir else Path(image_dir) / key
    if not target.exists():
        raise RecordError(f"target image {target} does not exist", field="key", **where)
    ref = entry.get("ref_image_path")
    if not isinstance(ref, str) or not Path(ref).exists():
        raise RecordError(f"reference image {ref!r} does not exist", field="ref_image_path", **where)
    caption = entry.get("caption")
    if not isinstance(caption, str) or not caption.strip():
        raise RecordError("empty caption", field="caption", **where)
    return {"id": entry.get("id", key), "source_image": _read_image(Path(ref), decode),
            "target_image": _read_image(target, decode), "instruction": caption}


def _read_image(path: Path, decode: bool):
    if decode:
        with Image.open(path) as image:
            image.load()
            return image.copy()
    return {"bytes": None, "path": str(path)}


# ---------------------------------------------------------------------------------------- InstructPix2Pix

def export_instructpix2pix(triplets: Iterable[Mapping[str, Any]], out_dir: str | Path, *,
                           on_error: str = "raise") -> Path:
    """Write a diffusers InstructPix2Pix `imagefolder` in `out_dir` (images/input, images/edited,
    metadata.jsonl with id, input_image_file_name, edit_prompt, edited_image_file_name); return `out_dir`.
    Train on it with `--train_data_dir <out_dir>` (the script's default column names match)."""
    folder = Path(out_dir).resolve()
    lines, skipped = [], []
    with _fresh_folder(folder, IP2P_METADATA, on_error):
        for sub in ("input", "edited"):
            (folder / "images" / sub).mkdir(parents=True, exist_ok=True)
        for row in _checked(triplets, on_error, skipped):
            source = Path("images") / "input" / (row["stem"] + row["source"][1])
            target = Path("images") / "edited" / (row["stem"] + row["target"][1])
            (folder / source).write_bytes(row["source"][0])
            (folder / target).write_bytes(row["target"][0])
            lines.append(json.dumps({"id": row["id"], "input_image_file_name": source.as_posix(),
                                     "edit_prompt": row["instruction"], "edited_image_file_name": target.as_posix()},
                                    ensure_ascii=False))
        (folder / IP2P_METADATA).write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        _write_report(folder, "instructpix2pix", folder.name, len(lines), skipped)
    return folder


def read_instructpix2pix(path: str | Path, *, decode: bool = False) -> list[dict]:
    """The triplets of an InstructPix2Pix export (its folder), every image checked present."""
    folder = Path(path)
    metadata = folder / IP2P_METADATA
    if not metadata.exists():
        raise RecordError("no metadata.jsonl (not an InstructPix2Pix imagefolder)", file=metadata)
    rows = []
    for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as err:
            raise RecordError(f"not JSON: {err}", file=metadata, row=number) from err
        row = {}
        for column, field in (("input_image", "source_image"), ("edited_image", "target_image")):
            name = item.get(f"{column}_file_name")
            if not isinstance(name, str) or not (folder / name).exists():
                raise RecordError(f"image {name!r} does not exist", file=metadata, row=number, field=f"{column}_file_name")
            row[field] = _read_image(folder / name, decode)
        prompt = item.get("edit_prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise RecordError("empty edit_prompt", file=metadata, row=number, field="edit_prompt")
        rows.append({"id": item.get("id", str(number)), **row, "instruction": prompt})
    return rows
