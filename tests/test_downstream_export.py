"""Triplet export: Step1X-Edit and InstructPix2Pix layouts read back, every path present, every row exact."""
from __future__ import annotations

import io
import json
from pathlib import Path

import datasets
import numpy as np
import pytest
from PIL import Image

from editcaption.downstream import export
from editcaption.downstream.export import (
    export_instructpix2pix,
    export_step1x,
    read_instructpix2pix,
    read_report,
    read_step1x,
)
from editcaption.records import RecordError


def _image(seed: int, mode: str = "RGB", size=(12, 9)) -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8), mode)


def _encoded(image: Image.Image, fmt: str) -> dict:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return {"bytes": buffer.getvalue(), "path": None}


@pytest.fixture
def triplets():
    """Mixed inputs: PIL images, PNG and JPEG bytes as `datasets` stores them, ids that are not file names."""
    return [
        {"id": "a/1", "source_image": _image(1), "target_image": _image(2), "instruction": "Turn the red circle blue."},
        {"id": "b 2", "source_image": _encoded(_image(3), "PNG"), "target_image": _encoded(_image(4), "JPEG"),
         "instruction": "把背景换成海滩。"},
        {"id": "c", "source_image": _image(5, "RGBA"), "target_image": _encoded(_image(6, "RGBA"), "PNG"),
         "instruction": "Move the square to the left."},
        # an id with a `datasets` split word: it must not end up in a file name (data_dir= would split on it)
        {"id": "zebra_train-1", "source_image": _image(7), "target_image": _image(8), "instruction": "Add a zebra."},
    ]


def _same_image(original, path: str) -> None:
    data = Path(path).read_bytes()
    if isinstance(original, dict):
        assert data == original["bytes"]  # encoded bytes are copied byte for byte
    else:
        with Image.open(path) as written:
            assert written.mode == original.mode
            assert np.array_equal(np.asarray(written), np.asarray(original))


def _check_round_trip(triplets, rows):
    assert [r["id"] for r in rows] == [t["id"] for t in triplets]
    for original, row in zip(triplets, rows, strict=True):
        assert row["instruction"] == original["instruction"]
        for field in ("source_image", "target_image"):
            assert Path(row[field]["path"]).is_file()
            _same_image(original[field], row[field]["path"])


def test_step1x_export_round_trips(tmp_path, triplets):
    folder = export_step1x(triplets, tmp_path, name="editcaption")
    assert folder == (tmp_path / "editcaption").resolve()
    metadata = json.loads((folder / "metadata.json").read_text(encoding="utf-8"))
    # Step1X-Edit's format: absolute target path -> {"ref_image_path": absolute source path, "caption": ...}
    assert len(metadata) == 4
    for key, entry in metadata.items():
        assert Path(key).is_absolute() and Path(key).is_file() and Path(key).parent.name == "target"
        assert Path(entry["ref_image_path"]).is_absolute() and Path(entry["ref_image_path"]).is_file()
        assert {"ref_image_path", "caption"} <= set(entry)
    config = export._load_toml(folder / "dataset_config.toml")
    export.check_step1x_config(config)
    dataset = config["datasets"][0]
    assert dataset["edit_dataset"] is True and dataset["resolution"] == [768, 768]
    assert Path(dataset["subsets"][0]["metadata_file"]) == folder / "metadata.json"
    _check_round_trip(triplets, read_step1x(folder))
    _check_round_trip(triplets, read_step1x(folder / "dataset_config.toml"))
    decoded = read_step1x(folder, decode=True)
    assert np.array_equal(np.asarray(decoded[0]["target_image"]), np.asarray(triplets[0]["target_image"]))
    assert read_report(folder)["n_written"] == 4


def test_step1x_export_is_deterministic_and_per_captioner(tmp_path, triplets):
    first = export_step1x(triplets, tmp_path, name="base")
    second = export_step1x(triplets, tmp_path, name="editcaption")
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    for rel in files:
        if rel.suffix in (".png", ".jpg"):
            assert (first / rel).read_bytes() == (second / rel).read_bytes()
    # each captioner has its own image copies (Step1X-Edit caches text-encoder outputs per image path)
    assert not set(json.loads((first / "metadata.json").read_text())) & set(json.loads((second / "metadata.json").read_text()))
    with pytest.raises(ValueError, match="plain folder name"):
        export_step1x(triplets, tmp_path, name="../x")


def test_step1x_config_keys_follow_the_sanitizer():
    with pytest.raises(RecordError, match="edit_dataset"):
        export.check_step1x_config({"datasets": [{"subsets": [{"metadata_file": "m.json"}]}]})
    with pytest.raises(RecordError, match="not accepted in a subset"):
        export.check_step1x_config({"datasets": [{"edit_dataset": True, "subsets": [{"metadata_file": "m", "ref_dir": "x"}]}]})
    with pytest.raises(RecordError, match=r"\[general\]"):
        export.check_step1x_config({"general": {"learning_rate": 1.0}, "datasets": []})


def test_instructpix2pix_export_loads_as_imagefolder(tmp_path, triplets):
    folder = export_instructpix2pix(triplets, tmp_path / "ip2p")
    _check_round_trip(triplets, read_instructpix2pix(folder))
    # as train_instruct_pix2pix.py loads it (data_files=<dir>/**) and as the brief asks (data_dir=)
    for kwargs in ({"data_dir": str(folder)}, {"data_files": {"train": str(folder / "**")}}):
        ds = datasets.load_dataset("imagefolder", **kwargs, split="train")
        assert {"input_image", "edit_prompt", "edited_image"} <= set(ds.column_names) and len(ds) == len(triplets)
        assert isinstance(ds.features["input_image"], datasets.Image)
        assert isinstance(ds.features["edited_image"], datasets.Image)
        by_id = {row["id"]: row for row in ds}
        for original in triplets:
            row = by_id[original["id"]]
            assert row["edit_prompt"] == original["instruction"]
            if not isinstance(original["source_image"], dict):
                assert np.array_equal(np.asarray(row["input_image"]), np.asarray(original["source_image"]))


@pytest.mark.parametrize("writer", ["step1x", "ip2p"])
def test_bad_rows_raise_with_row_and_field_or_are_reported(tmp_path, triplets, writer):
    def run(rows, **kwargs):
        if writer == "step1x":
            return export_step1x(rows, tmp_path / "out", name=f"n{len(kwargs)}", **kwargs)
        return export_instructpix2pix(rows, tmp_path / f"ip2p{len(kwargs)}", **kwargs)

    bad = [dict(triplets[0]), {**triplets[1], "instruction": "  "}, {**triplets[2], "target_image": None},
           {**triplets[0], "id": "d", "source_image": {"bytes": b"not an image", "path": None}}, dict(triplets[0])]
    with pytest.raises(RecordError, match=r"row 1 \(id b 2\), field 'instruction'"):
        run(bad)
    assert not (tmp_path / "out" / "n0").exists() and not (tmp_path / "ip2p0").exists()  # no half export left
    folder = run(bad, on_error="skip")
    report = read_report(folder)
    assert report["n_written"] == 1 and report["n_skipped"] == 4
    assert [s["field"] for s in report["skipped"]] == ["instruction", "target_image", "source_image", "id"]
    rows = read_step1x(folder) if writer == "step1x" else read_instructpix2pix(folder)
    assert [r["id"] for r in rows] == ["a/1"]
    with pytest.raises(ValueError, match="on_error"):
        run(triplets, on_error="ignore")


def test_readers_name_the_missing_file(tmp_path, triplets):
    folder = export_step1x(triplets, tmp_path, name="x")
    next((folder / "source").iterdir()).unlink()
    with pytest.raises(RecordError, match="ref_image_path"):
        read_step1x(folder)
    ip2p = export_instructpix2pix(triplets, tmp_path / "ip2p")
    next((ip2p / "images" / "edited").iterdir()).unlink()
    with pytest.raises(RecordError, match="edited_image_file_name"):
        read_instructpix2pix(ip2p)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("x")
    with pytest.raises(FileExistsError):
        export_instructpix2pix(triplets, tmp_path / "busy")
