"""Real-dataset loaders: schema mapping, image checks, sampling, and errors that name file/row/field."""
from __future__ import annotations

import io
import json
import logging

import datasets
import pytest
from PIL import Image

from editcaption import records
from editcaption.data import loaders
from editcaption.data.loaders import (
    load_benchmark,
    load_bytemorph_bench,
    load_hq_edit,
    load_magicbrush,
    load_own_pairs,
    load_report,
    normalize_bm_edit_type,
    sample,
)
from editcaption.records import RecordError
from fixtures_loaders import (
    BM_BENCH_FEATURES,
    BM_BENCH_ROWS,
    HQ_EDIT_FEATURES,
    HQ_EDIT_ROWS,
    MAGICBRUSH_FEATURES,
    image_bytes,
    magicbrush_rows,
    write_hub_parquet,
    write_plain_parquet,
)

from real_data import REAL_PAIRS, require_real_pairs


def _decoded(image_cell: dict) -> Image.Image:
    return Image.open(io.BytesIO(image_cell["bytes"]))


def _check_contract(ds: datasets.Dataset, source: str) -> None:
    assert ds.features == records.EDIT_PAIR_FEATURES
    assert list(ds.features) == list(records.EDIT_PAIR_FEATURES)
    for i, row in enumerate(ds):
        records.validate_pair(row, index=i)
        assert row["source"] == source
        assert row["source_image"].mode == "RGB" and row["target_image"].mode == "RGB"


@pytest.fixture
def hq_edit_file(tmp_path):
    return write_hub_parquet(tmp_path / "hq" / "data" / "train-00000-of-00001.parquet", HQ_EDIT_ROWS,
                             HQ_EDIT_FEATURES)


@pytest.fixture
def bm_bench_file(tmp_path):
    return write_hub_parquet(tmp_path / "bm" / "data" / "test-00000-of-00001.parquet", BM_BENCH_ROWS,
                             BM_BENCH_FEATURES)


@pytest.fixture
def magicbrush_dir(tmp_path):
    root = tmp_path / "magicbrush"
    write_hub_parquet(root / "data" / "train-00000-of-00001.parquet", magicbrush_rows("train"),
                      MAGICBRUSH_FEATURES)
    write_hub_parquet(root / "data" / "dev-00000-of-00001.parquet", magicbrush_rows("dev"), MAGICBRUSH_FEATURES)
    return root


# --- HQ-Edit ---------------------------------------------------------------------------------------

def test_hq_edit_maps_columns(hq_edit_file):
    ds = load_hq_edit(hq_edit_file)
    _check_contract(ds, "hq-edit")
    assert ds["id"] == [f"hq-edit-{i}" for i in range(len(HQ_EDIT_ROWS))]
    for i, (row, raw) in enumerate(zip(ds, HQ_EDIT_ROWS)):
        assert row["instruction"] == raw["edit"]
        assert row["gt"]["primary_changes"] == [raw["edit"]]
        assert row["gt"]["overall"] == f"Source image: {raw['input']}\nTarget image: {raw['output']}"
        assert row["category"] == "" and row["edit_type"] == "" and row["changes"] == []
        assert row["source_image"].size == _decoded(raw["input_image"]).size
        assert row["source_image"].getpixel((0, 0)) == (40 * i, 10, 10)  # the PNG's pixels, unchanged
    report = load_report(ds)
    assert (report.source, report.split, report.rows_in_split, report.rows_kept) == ("hq-edit", "train", 6, 6)


def test_hq_edit_plain_binary_struct_and_path_columns(tmp_path):
    """The demo parquet stores raw bytes; structs without metadata and file paths work too."""
    raw_bytes = [row["input_image"]["bytes"] for row in HQ_EDIT_ROWS]
    names = []
    for i, row in enumerate(HQ_EDIT_ROWS):
        names.append(f"img/out_{i}.jpg")
        (tmp_path / "img").mkdir(exist_ok=True)
        (tmp_path / names[-1]).write_bytes(row["output_image"]["bytes"])
    texts = {key: [row[key] for row in HQ_EDIT_ROWS] for key in ("input", "edit", "inverse_edit", "output")}
    plain = write_plain_parquet(tmp_path / "demo.parquet", {**texts, "input_image": raw_bytes, "output_image": names})
    struct = write_plain_parquet(tmp_path / "struct.parquet", {
        **texts, "input_image": [{"bytes": b, "path": None} for b in raw_bytes],
        "output_image": [{"bytes": None, "path": name} for name in names]})
    for path in (plain, struct):
        ds = load_hq_edit(path)
        _check_contract(ds, "hq-edit")
        assert ds["instruction"] == texts["edit"]
        assert [im.size for im in ds["target_image"]] == [_decoded(r["output_image"]).size for r in HQ_EDIT_ROWS]


def test_hq_edit_reads_all_shards_of_a_folder(tmp_path):
    root = tmp_path / "HQ-Edit"
    write_hub_parquet(root / "data" / "train-00000-of-00002.parquet", HQ_EDIT_ROWS[:4], HQ_EDIT_FEATURES)
    write_hub_parquet(root / "data" / "train-00001-of-00002.parquet", HQ_EDIT_ROWS[4:], HQ_EDIT_FEATURES)
    ds = load_hq_edit(root)
    assert ds["instruction"] == [row["edit"] for row in HQ_EDIT_ROWS]
    drawn = load_hq_edit(root, n=4, seed=3)
    assert drawn["id"] == sample(ds, 4, seed=3)["id"]


# --- ByteMorph-Bench -------------------------------------------------------------------------------

def test_bm_bench_maps_every_category(bm_bench_file):
    ds = load_bytemorph_bench(bm_bench_file.parent.parent)
    _check_contract(ds, "bm-bench")
    assert ds["edit_type"] == list(loaders.BM_BENCH_EDIT_TYPES)
    assert set(ds["category"]) == {"structural"}
    assert ds["id"] == [f"{t}-{i:05d}" for i, t in enumerate(loaders.BM_BENCH_EDIT_TYPES)]
    for row, raw in zip(ds, BM_BENCH_ROWS):
        assert row["instruction"] == raw["edit_prompt"]
        assert row["gt"]["primary_changes"] == [raw["edit_prompt_rewrite_instruction"] or raw["edit_prompt"]]
        assert raw["src_img_caption"] in row["gt"]["overall"] and raw["tgt_img_caption"] in row["gt"]["overall"]
        assert row["source_image"].size == _decoded(raw["src_img"]).size
    assert ds[4]["gt"]["primary_changes"] == [BM_BENCH_ROWS[4]["edit_prompt"]]  # empty rewrite -> prompt
    assert load_report(ds).notes == []


@pytest.mark.parametrize("spelling, expected", [
    ("Camera Zoom", "camera_zoom"), ("0_camera_zoom", "camera_zoom"), ("camera-motion", "camera_motion"),
    ("Camera Move", "camera_motion"), ("Object Motion", "object_motion"), ("3_Human_Motion", "human_motion"),
    ("Human Motion/Gesture", "human_motion"), ("Interaction", "interaction"), ("Lighting", "lighting"),
])
def test_normalize_bm_edit_type(spelling, expected):
    assert normalize_bm_edit_type(spelling) == expected


def test_bm_bench_unknown_edit_type_is_kept_and_reported(tmp_path):
    rows = [dict(BM_BENCH_ROWS[0], edit_type="Lighting")]
    ds = load_bytemorph_bench(write_hub_parquet(tmp_path / "bm.parquet", rows, BM_BENCH_FEATURES))
    assert ds["edit_type"] == ["lighting"] and ds["category"] == ["structural"]
    assert "lighting" in load_report(ds).notes[0]


def test_bm_bench_from_save_to_disk_folder(tmp_path):
    bench = datasets.Dataset.from_list(BM_BENCH_ROWS, features=BM_BENCH_FEATURES)
    datasets.DatasetDict({"test": bench}).save_to_disk(str(tmp_path / "saved"))
    ds = load_bytemorph_bench(tmp_path / "saved")
    assert ds["edit_type"] == list(loaders.BM_BENCH_EDIT_TYPES)
    with pytest.raises(RecordError, match=r"no split 'train'.*\['test'\]"):
        load_bytemorph_bench(tmp_path / "saved", split="train")


# --- MagicBrush ------------------------------------------------------------------------------------

def test_magicbrush_picks_the_split_files(magicbrush_dir):
    ds = load_magicbrush(magicbrush_dir)
    _check_contract(ds, "magicbrush")
    assert ds["id"] == ["242679-1", "242679-2", "327726-1", "327726-2"]
    assert all(text.startswith("[dev]") for text in ds["instruction"])
    assert [row["gt"]["primary_changes"] for row in ds] == [[text] for text in ds["instruction"]]
    assert all(text.startswith("[train]") for text in load_magicbrush(magicbrush_dir, split="train")["instruction"])
    with pytest.raises(RecordError, match=r"no parquet file for split 'test' \(found splits: \['dev', 'train'\]\)"):
        load_magicbrush(magicbrush_dir, split="test")


# --- the hub code path (no network: datasets.load_dataset is replaced) ----------------------------

def test_hub_name_goes_through_load_dataset(monkeypatch):
    calls = []

    def fake_load_dataset(name, split):
        calls.append((name, split))
        return datasets.Dataset.from_list(magicbrush_rows(split), features=MAGICBRUSH_FEATURES)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    ds = load_benchmark("magicbrush", n=2, seed=0)
    assert calls == [("osunlp/MagicBrush", "dev")]
    assert len(ds) == 2 and load_report(ds).origin == "hub:osunlp/MagicBrush"


def test_hub_name_without_network_says_to_download(monkeypatch):
    def offline(name, split):
        raise ConnectionError("Couldn't reach the Hugging Face Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(RecordError, match=r"file UCSC-VLAA/HQ-Edit.*ConnectionError.*Download the dataset"):
        load_hq_edit()


@pytest.mark.parametrize("where", ["data/hq.parquet", "/nowhere/at/all"])
def test_missing_local_path_is_not_sent_to_the_hub(where, monkeypatch):
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("looked up on the hub"))
    with pytest.raises(RecordError, match="no such file or folder"):
        load_hq_edit(where)


# --- sampling --------------------------------------------------------------------------------------

def test_sample_is_seeded_and_without_replacement(hq_edit_file, caplog):
    ds = load_hq_edit(hq_edit_file)
    first, again = sample(ds, 3, seed=1), sample(ds, 3, seed=1)
    assert first["id"] == again["id"] and len(set(first["id"])) == 3
    assert sample(ds, 3, seed=2)["id"] != first["id"]
    assert sample(ds, 5, seed=1)["id"][:3] == first["id"]  # a smaller draw is a prefix of a larger one
    assert load_hq_edit(hq_edit_file, n=3, seed=1)["id"] == first["id"]
    assert load_report(first).sample == {"n": 3, "seed": 1} and load_report(first).rows_kept == 3
    with caplog.at_level(logging.INFO, logger="editcaption.data.loaders"):
        everything = sample(ds, 50, seed=1)
    assert sorted(everything["id"]) == sorted(ds["id"]) and everything["id"] != ds["id"]
    assert "all rows are taken" in caplog.text
    with pytest.raises(ValueError, match="non-negative"):
        sample(ds, -1)


# --- one's own pairs -------------------------------------------------------------------------------

def test_own_pairs_real_manifest():
    require_real_pairs()
    ds = load_own_pairs(REAL_PAIRS / "manifest.jsonl")
    _check_contract(ds, "own")
    lines = [json.loads(line) for line in (REAL_PAIRS / "manifest.jsonl").read_text().splitlines()]
    assert ds["id"] == [line["id"] for line in lines] and len(ds) == 19
    for row, line in zip(ds, lines):
        for field, key in (("source_image", "source"), ("target_image", "target")):
            with Image.open(REAL_PAIRS / line[key]) as on_disk:
                assert row[field].size == on_disk.size  # decoded at full size, not resized
        assert row["instruction"] == line["instruction"] and row["gt"]["primary_changes"] == [line["instruction"]]
        assert row["edit_type"] == line["edit_type"]
    sizes = {row["id"]: row["source_image"].size for row in ds}
    assert sizes["01_step1x_add-ruby-pendant"] == (512, 768) and sizes["04_step1x_anime-style"] == (681, 975)
    mapped = {row["id"][:2]: row["category"] for row in ds if row["category"]}
    assert mapped == {"06": "semantic", "07": "stylistic", "08": "semantic", "10": "semantic", "12": "semantic"}
    assert "license" in load_report(ds).notes[0]
    assert load_own_pairs(REAL_PAIRS)["id"] == ds["id"]  # the folder with manifest.jsonl


def test_own_pairs_folder_layout_and_rgb(tmp_path):
    for name, mode, color in (("a", "RGBA", (255, 0, 0, 128)), ("b", "P", 3), ("c", "L", 90)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "source.png").write_bytes(image_bytes((9, 7), color, mode=mode))
        (tmp_path / name / "target.jpg").write_bytes(image_bytes((9, 7), (0, 0, 255), fmt="JPEG"))
    (tmp_path / "notes").mkdir()
    ds = load_own_pairs(tmp_path)
    _check_contract(ds, "own")
    assert ds["id"] == ["a", "b", "c"] and ds["instruction"] == ["", "", ""]
    assert [im.size for im in ds["source_image"]] == [(9, 7)] * 3
    assert "notes" in load_report(ds).notes[0]


def test_own_pairs_exif_orientation_is_applied(tmp_path):
    """A phone JPEG stored sideways with EXIF orientation 6 is turned upright (as viewers show it)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    buffer = io.BytesIO()
    Image.new("RGB", (30, 10), (200, 0, 0)).save(buffer, format="JPEG", exif=exif)
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "source.jpg").write_bytes(buffer.getvalue())
    (tmp_path / "p" / "target.png").write_bytes(image_bytes((10, 30), (0, 0, 200)))
    row = load_own_pairs(tmp_path)[0]
    assert row["source_image"].size == (10, 30) == row["target_image"].size


def test_own_pairs_jsonl_gt_and_category(tmp_path):
    (tmp_path / "s.png").write_bytes(image_bytes((5, 5), (1, 2, 3)))
    (tmp_path / "t.png").write_bytes(image_bytes((5, 5), (3, 2, 1)))
    line = {"id": "p1", "source": "s.png", "target": "t.png", "instruction": "Move the cup left.",
            "gt": {"primary_changes": ["cup moves left"], "overall": "a cup on a desk"}, "edit_type": "view change",
            "category": "structural"}
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps(line) + "\n\n" + json.dumps({**line, "id": "p2", "gt": None, "category": None}))
    ds = load_own_pairs(manifest)
    assert ds[0]["gt"] == {"primary_changes": ["cup moves left"], "secondary_changes": [], "overall": "a cup on a desk"}
    assert ds[1]["gt"]["primary_changes"] == ["Move the cup left."]
    assert ds["category"] == ["structural", "structural"]  # p2: from edit_type "view change"
    manifest.write_text(json.dumps({**line, "category": "geometric"}))
    with pytest.raises(RecordError, match=r"pairs.jsonl, row line 1 \(id p1\), field 'category'"):
        load_own_pairs(manifest)
    manifest.write_text(json.dumps({**line, "gt": {"primary": ["x"]}}))
    with pytest.raises(RecordError, match=r"field 'gt'"):
        load_own_pairs(manifest)


# --- bad input -------------------------------------------------------------------------------------

def test_corrupt_image_raises_or_is_skipped(tmp_path):
    rows = [dict(row) for row in BM_BENCH_ROWS]
    rows[2]["src_img"] = {"bytes": b"\x89PNG\r\n\x1a\n this is not a png", "path": None}
    path = write_hub_parquet(tmp_path / "bad.parquet", rows, BM_BENCH_FEATURES)
    with pytest.raises(RecordError, match=r"bad.parquet, row object_motion-00002, field 'source_image'.*cannot decode"):
        load_bytemorph_bench(path)
    ds = load_bytemorph_bench(path, on_error="skip")
    assert len(ds) == 4 and "object_motion-00002" not in ds["id"]
    report = load_report(ds)
    assert (report.rows_read, report.rows_kept) == (5, 4)
    assert report.skipped[0]["row"] == "object_motion-00002" and report.skipped[0]["field"] == "source_image"


def test_truncated_jpeg_is_caught(tmp_path):
    rows = [dict(HQ_EDIT_ROWS[0])]
    jpeg = image_bytes((64, 64), (10, 200, 30), fmt="JPEG")
    rows[0]["output_image"] = {"bytes": jpeg[: len(jpeg) // 2], "path": None}
    path = write_hub_parquet(tmp_path / "hq.parquet", rows, HQ_EDIT_FEATURES)
    with pytest.raises(RecordError, match=r"row hq-edit-0, field 'target_image'"):
        load_hq_edit(path)


def test_missing_image_path_names_line_and_field(tmp_path):
    (tmp_path / "s.png").write_bytes(image_bytes((5, 5), (1, 2, 3)))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text(json.dumps({"id": "x", "source": "s.png", "target": "gone.png"}) + "\n")
    with pytest.raises(RecordError, match=r"manifest.jsonl, row line 1 \(id x\), field 'target_image'.*gone.png"):
        load_own_pairs(tmp_path)


def test_missing_column_names_file_and_column(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "edit"} for row in HQ_EDIT_ROWS]
    features = datasets.Features({k: v for k, v in HQ_EDIT_FEATURES.items() if k != "edit"})
    path = write_hub_parquet(tmp_path / "no_edit.parquet", rows, features)
    with pytest.raises(RecordError, match=r"no_edit.parquet, field 'edit': missing column 'edit'"):
        load_hq_edit(path)


def test_wrong_typed_column_names_file_and_column(tmp_path):
    rows = [dict(row, turn_index=str(row["turn_index"])) for row in magicbrush_rows("dev")]
    features = datasets.Features({**MAGICBRUSH_FEATURES, "turn_index": datasets.Value("string")})
    path = write_hub_parquet(tmp_path / "dev.parquet", rows, features)
    with pytest.raises(RecordError, match=r"dev.parquet, field 'turn_index': column 'turn_index' has type string, "
                                          r"expected int"):
        load_magicbrush(path)
    texts = write_plain_parquet(tmp_path / "ints.parquet", {"input_image": [1], "output_image": [2], "input": ["a"],
                                                            "edit": ["b"], "output": ["c"]})
    with pytest.raises(RecordError, match=r"field 'input_image'.*expected image"):
        load_hq_edit(texts)


def test_jsonl_line_that_is_not_json(tmp_path):
    (tmp_path / "s.png").write_bytes(image_bytes((5, 5), (1, 2, 3)))
    good = json.dumps({"id": "ok", "source": "s.png", "target": "s.png"})
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(good + "\n{'id': 'single quotes'}\n")
    with pytest.raises(RecordError, match=r"pairs.jsonl, row line 2: not valid JSON"):
        load_own_pairs(manifest)
    ds = load_own_pairs(manifest, on_error="skip")
    assert ds["id"] == ["ok"] and load_report(ds).skipped[0]["row"] == "line 2"


def test_jsonl_row_missing_source(tmp_path):
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text(json.dumps({"id": "x", "target": "t.png"}) + "\n")
    with pytest.raises(RecordError, match=r"pairs.jsonl, row line 1, field 'source': missing key 'source'"):
        load_own_pairs(manifest)


def test_duplicate_ids_are_an_error(tmp_path):
    rows = magicbrush_rows("dev") + magicbrush_rows("dev")[:1]
    path = write_hub_parquet(tmp_path / "dup.parquet", rows, MAGICBRUSH_FEATURES)
    with pytest.raises(RecordError, match=r"row 4, field 'id': duplicate id \(first seen at row 0\)"):
        load_magicbrush(path)


# --- by name ---------------------------------------------------------------------------------------

def test_load_benchmark_dispatch(tmp_path, bm_bench_file):
    assert len(load_benchmark("bm-bench", bm_bench_file, n=2, seed=5)) == 2
    require_real_pairs()
    own = load_benchmark("own", REAL_PAIRS, n=4, seed=0)
    assert len(own) == 4 and own["id"] == sample(load_own_pairs(REAL_PAIRS), 4, 0)["id"]
    records.save_pairs(own, tmp_path / "saved")
    assert load_benchmark("synthetic", tmp_path / "saved")["id"] == own["id"]
    with pytest.raises(ValueError, match="unknown benchmark 'gedit'"):
        load_benchmark("gedit")
    with pytest.raises(ValueError, match="needs a path"):
        load_benchmark("own")
    with pytest.raises(ValueError, match="on_error must be one of"):
        load_benchmark("bm-bench", bm_bench_file, on_error="ignore")
