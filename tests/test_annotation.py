"""Annotation sheets: export, fill (by hand or the simulated annotator), import with checks, versioned store."""
import csv
import hashlib
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from PIL import Image

from editcaption import annotation as ann
from editcaption import records

N_PAIRS = 4
MODELS = ("base", "ours")


def _image(seed: int) -> Image.Image:
    return Image.new("RGB", (8, 6), ((seed * 40) % 256, (seed * 90) % 256, 200))


def _pairs(n=N_PAIRS):
    return [{"id": f"pair-{i}", "source_image": _image(2 * i), "target_image": _image(2 * i + 1),
             "instruction": f"make square {i} blue"} for i in range(n)]


def _rows(kind):
    """Input rows for each kind: edit pairs, preference pairs ([source, target] images), (pair, model)."""
    if kind == "refinement":
        return _pairs()
    if kind == "correction":
        return [{"id": p["id"], "images": [p["source_image"], p["target_image"]], "rejected": p["instruction"]}
                for p in _pairs()]
    return [{**p, "model": m, "instruction": f"{p['instruction']} ({m})"} for p in _pairs() for m in MODELS]


def _truth(kind, sheet):
    """A correct answer per row, different from the given text."""
    spec = ann.sheet_spec(kind)
    if kind == "refinement":
        return {spec.key(r): f"turn the red square {i} blue" for i, r in enumerate(sheet)}
    if kind == "correction":
        return {spec.key(r): (f"rotate square {i} to the left", records.ERROR_TYPES[i % 3], records.SEVERITIES[i % 3])
                for i, r in enumerate(sheet)}
    answers = [{"label": "correct"}, {"label": "P0", "checklist_id": "4"}, {"label": "P1", "note": "too dark"},
               {"label": "P2", "checklist_id": 7}]
    return {spec.key(r): answers[i % 4] for i, r in enumerate(sheet)}


def _expected_fills(kind, sheet, truth):
    spec = ann.sheet_spec(kind)
    filled = ann.simulated_annotator(kind, sheet, truth=truth)
    return {spec.key(r): {f.name: r[f.name] for f in spec.fills} for r in filled}


def _labelstudio_by_hand(tasks_path: Path, kind, filled_rows) -> list:
    """A Label Studio export as the app writes it: the imported tasks plus ids, timestamps and
    annotations whose results are textarea/choices items named after the config's tags."""
    spec = ann.sheet_spec(kind)
    tasks = json.loads(tasks_path.read_text())
    by_key = {spec.key(r): r for r in filled_rows}
    out = []
    for number, task in enumerate(tasks, start=101):
        row = by_key[spec.key(task["data"])]
        result = []
        for f in spec.fills:
            if row[f.name]:
                kind_of = "textarea" if f.choices is None else "choices"
                value = {"text": [row[f.name]]} if f.choices is None else {"choices": [row[f.name]]}
                result.append({"value": value, "id": f"r{number}{f.name[:3]}", "from_name": f.name,
                               "to_name": spec.texts[0], "type": kind_of, "origin": "manual"})
        cancelled = {"id": number * 10, "result": [], "was_cancelled": True, "created_at": "2026-01-01T09:00:00Z"}
        annotation = {"id": number * 10 + 1, "completed_by": 1, "result": result, "was_cancelled": False,
                      "ground_truth": False, "created_at": "2026-01-02T10:00:00.000000Z",
                      "updated_at": "2026-01-02T10:01:00.000000Z", "lead_time": 12.5, "task": number,
                      "project": 3, "prediction": {}, "result_count": 0}
        out.append({"id": number, "annotations": [cancelled, annotation], "drafts": [], "predictions": [],
                    "data": task["data"], "meta": {}, "created_at": "2026-01-01T08:00:00Z",
                    "updated_at": "2026-01-02T10:01:00Z", "inner_id": number - 100, "total_annotations": 1,
                    "cancelled_annotations": 1, "total_predictions": 0, "project": 3})
    return out


@pytest.fixture
def refinement_sheet(tmp_path):
    paths = ann.export_sheet("refinement", _pairs(), tmp_path / "sheet")
    return paths, ann.read_sheet(paths["jsonl"])


# ------------------------------------------------------------------------------------------- export

def test_export_writes_sheets_images_once_and_a_labelstudio_project(tmp_path):
    paths = ann.export_sheet("evaluation", _rows("evaluation"), tmp_path / "out")
    sheet = ann.read_sheet(paths["csv"])
    assert sheet == ann.read_sheet(paths["jsonl"])
    assert len(sheet) == N_PAIRS * len(MODELS)
    assert list(sheet[0]) == ["id", "model", "source_image", "target_image", "instruction", "label",
                              "checklist_id", "note"]
    assert all(r["label"] == r["checklist_id"] == r["note"] == "" for r in sheet)
    # one PNG per pair and side, shared by the rows of both models, pixels kept
    assert sorted(p.name for p in paths["images"].iterdir()) == sorted(
        f"pair-{i}_{side}.png" for i in range(N_PAIRS) for side in ("source", "target"))
    assert sheet[2]["source_image"] == "images/pair-1_source.png"
    with Image.open(paths["images"].parent / sheet[2]["target_image"]) as png:
        assert png.format == "PNG" and png.getpixel((0, 0)) == _image(3).getpixel((0, 0))

    tasks = json.loads(paths["labelstudio_tasks"].read_text())
    assert len(tasks) == len(sheet) and set(tasks[0]) == {"data"}
    assert tasks[0]["data"]["source_image"] == ann.LABELSTUDIO_LOCAL_FILES + "images/pair-0_source.png"
    assert tasks[1]["data"]["model"] == "ours"


@pytest.mark.parametrize("kind", ann.KINDS)
def test_labelstudio_config_is_wellformed_with_two_images_side_by_side(tmp_path, kind):
    paths = ann.export_sheet(kind, _rows(kind), tmp_path / kind, formats=("labelstudio",))
    root = ET.parse(paths["labelstudio_config"]).getroot()
    assert root.tag == "View"
    flex = [v for v in root.iter("View") if v.get("style") == "display:flex"]
    assert len(flex) == 1 and [i.get("name") for i in flex[0].iter("Image")] == ["source_image", "target_image"]
    assert len(list(root.iter("Image"))) == 2
    spec = ann.sheet_spec(kind)
    objects = {t.get("name") for t in root.iter("Text")}
    assert objects == set(spec.texts)  # the model name stays hidden from evaluators
    controls = {t.get("name"): t for t in list(root.iter("TextArea")) + list(root.iter("Choices"))}
    assert set(controls) == {f.name for f in spec.fills}
    assert all(c.get("toName") in objects for c in controls.values())
    for f in spec.fills:
        if f.choices:  # what Label Studio stores is the alias (or the value where there is none)
            stored = [c.get("alias") or c.get("value") for c in controls[f.name].iter("Choice")]
            assert tuple(stored) == f.choices
    assert not (tmp_path / kind / "sheet.csv").exists()


def test_export_from_a_datasets_edit_pair_dataset(tmp_path):
    rows = [{**p, "source": "synthetic", "category": "semantic", "edit_type": "color", "gt": records.empty_gt(),
             "changes": [records.make_change("color", "square", "color", "red", "blue")]} for p in _pairs(2)]
    paths = ann.export_sheet("refinement", records.pairs_from_rows(rows), tmp_path / "ds", formats=("jsonl",))
    sheet = ann.read_sheet(paths["jsonl"])
    assert [r["candidate_instruction"] for r in sheet] == ["make square 0 blue", "make square 1 blue"]
    assert (tmp_path / "ds" / sheet[1]["target_image"]).is_file()


def test_export_refuses_to_write_over_a_sheet(tmp_path, refinement_sheet):
    paths, _ = refinement_sheet
    before = paths["csv"].read_bytes()
    with pytest.raises(records.RecordError, match="may hold human work"):
        ann.export_sheet("refinement", _pairs(), paths["csv"].parent)
    assert paths["csv"].read_bytes() == before


def test_export_names_the_row_and_field_of_bad_input(tmp_path):
    rows = _pairs(2)
    del rows[1]["instruction"]
    with pytest.raises(records.RecordError) as err:
        ann.export_sheet("refinement", rows, tmp_path / "a")
    assert (err.value.row, err.value.field) == (1, "candidate_instruction")
    rows = _pairs(2)
    rows[0]["target_image"] = str(tmp_path / "nowhere.png")
    with pytest.raises(records.RecordError, match="image does not open") as err:
        ann.export_sheet("refinement", rows, tmp_path / "b")
    assert (err.value.row, err.value.field) == (0, "target_image")


# ------------------------------------------------------------------------------------- round trips

@pytest.mark.parametrize("fmt", ["csv", "jsonl", "labelstudio"])
@pytest.mark.parametrize("kind", ann.KINDS)
def test_round_trip(tmp_path, kind, fmt):
    paths = ann.export_sheet(kind, _rows(kind), tmp_path / "export")
    sheet = ann.read_sheet(paths["jsonl"])
    truth = _truth(kind, sheet)
    filled = ann.simulated_annotator(kind, sheet, truth=truth)
    if fmt == "labelstudio":
        source = tmp_path / "project-3-at-2026-01-02.json"
        source.write_text(json.dumps(_labelstudio_by_hand(paths["labelstudio_tasks"], kind, filled)))
    else:
        source = ann.write_sheet(kind, filled, tmp_path / f"filled.{fmt}")
    result = ann.import_sheet(kind, source, expected=paths["jsonl"].parent, store_dir=tmp_path / "store")
    assert (result.format, result.n_read, result.n_accepted, result.n_rejected) == (fmt, len(sheet), len(sheet), 0)
    assert result.missing == [] and result.stored == tmp_path / "store" / kind / "import-0001.jsonl"

    merged = ann.merged_view(kind, tmp_path / "store")
    spec = ann.sheet_spec(kind)
    fills = {k: {f.name: r[f.name] for f in spec.fills} for k, r in merged.items()}
    assert fills == _expected_fills(kind, sheet, truth)
    exported = {spec.key(r): r for r in sheet}
    for key, row in merged.items():  # given columns come back as exported
        assert all(row[c] == exported[key][c] for c in spec.keys + ann.IMAGE_COLUMNS + spec.texts)
        assert row["import"] == "import-0001.jsonl"


def test_labelstudio_export_written_by_the_module_imports(tmp_path, refinement_sheet):
    paths, sheet = refinement_sheet
    filled = ann.simulated_annotator("refinement", sheet, truth=_truth("refinement", sheet))
    source = ann.write_sheet("refinement", filled, tmp_path / "export.json")
    assert json.loads(source.read_text())[0]["annotations"][0]["result"][0]["type"] == "textarea"
    result = ann.import_sheet("refinement", source, expected=paths["jsonl"], store_dir=tmp_path / "store")
    assert result.format == "labelstudio" and result.n_accepted == N_PAIRS


def test_partial_file_reports_missing_rows_and_extra_columns(tmp_path, refinement_sheet):
    paths, sheet = refinement_sheet
    filled = ann.simulated_annotator("refinement", sheet[:3], truth=_truth("refinement", sheet))
    for row in filled:
        row["reviewer_comment"] = "ok"
    source = tmp_path / "part.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in filled))
    result = ann.import_sheet("refinement", source, expected=sheet, store_dir=tmp_path / "store")
    assert result.n_accepted == 3 and result.missing == ["pair-3"]
    assert result.ignored_columns == ["reviewer_comment", "simulated_mistake"]
    assert "reviewer_comment" not in ann.merged_view("refinement", tmp_path / "store")["pair-0"]


# ---------------------------------------------------------------------------------------- bad input

def _filled(tmp_path, kind):
    paths = ann.export_sheet(kind, _rows(kind), tmp_path / "export", formats=("jsonl",))
    sheet = ann.read_sheet(paths["jsonl"])
    return paths["jsonl"], [{c: r[c] for c in ann.sheet_spec(kind).columns}
                            for r in ann.simulated_annotator(kind, sheet, truth=_truth(kind, sheet))]


def _set(index, column, value):
    def change(rows):
        rows[index][column] = value
    return change


def _copy_id(src, dst):
    def change(rows):
        rows[dst]["id"] = rows[src]["id"]
    return change


ROW_ERRORS = [  # kind, change, (row index, field) of the first problem, words in the message
    ("refinement", _set(1, "id", "pair-99"), (1, "id"), "unknown"),
    ("refinement", _copy_id(0, 2), (0, "id"), "appears 2 times"),
    ("refinement", _set(2, "refined_instruction", "  "), (2, "refined_instruction"), "empty"),
    ("refinement", _set(3, "candidate_instruction", "make square 3 red"), (3, "candidate_instruction"), "changed"),
    ("correction", _set(1, "severity", "P3"), (1, "severity"), "invalid choice 'P3'"),
    ("correction", _set(0, "error_type", "color"), (0, "error_type"), "invalid choice 'color'"),
    ("correction", _set(2, "corrected_instruction", "make square 2  blue"), (2, "corrected_instruction"), "equals"),
    ("evaluation", _set(5, "label", "wrong"), (5, "label"), "invalid choice 'wrong'"),
    ("evaluation", _set(4, "model", "gpt"), (4, "model"), "unknown"),
    ("evaluation", _set(1, "checklist_id", "7"), (1, "checklist_id"), "P2, not P0"),
    ("evaluation", _set(0, "checklist_id", "2"), (0, "checklist_id"), "labelled 'correct'"),
    ("evaluation", _set(3, "checklist_id", "9"), (3, "checklist_id"), "invalid choice '9'"),
]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
@pytest.mark.parametrize("kind,change,where,words", ROW_ERRORS)
def test_row_errors_name_file_row_and_field(tmp_path, kind, change, where, words, fmt):
    expected, rows = _filled(tmp_path, kind)
    change(rows)
    source = ann.write_sheet(kind, rows, tmp_path / f"filled.{fmt}")
    with pytest.raises(ann.SheetImportError) as err:
        ann.import_sheet(kind, source, expected=expected, store_dir=tmp_path / "store")
    first = err.value.errors[0]
    line = where[0] + (2 if fmt == "csv" else 1)  # the CSV header is line 1
    assert (Path(first.file), first.row, first.field) == (source, line, where[1])
    assert words in str(first)
    assert f"file {source}, row {line}, field '{where[1]}'" in str(err.value)
    assert not (tmp_path / "store").exists()  # nothing stored when the import raises


def test_labelstudio_errors_name_the_task(tmp_path):
    paths = ann.export_sheet("correction", _rows("correction"), tmp_path / "export")
    sheet = ann.read_sheet(paths["jsonl"])
    filled = ann.simulated_annotator("correction", sheet, truth=_truth("correction", sheet))
    tasks = _labelstudio_by_hand(paths["labelstudio_tasks"], "correction", filled)
    tasks[2]["annotations"][1]["result"] = [r for r in tasks[2]["annotations"][1]["result"]
                                            if r["from_name"] != "severity"]
    source = tmp_path / "export.json"
    source.write_text(json.dumps(tasks))
    with pytest.raises(ann.SheetImportError) as err:
        ann.import_sheet("correction", source, expected=paths["jsonl"], store_dir=tmp_path / "store")
    assert [(e.row, e.field) for e in err.value.errors] == [(3, "severity")]


def test_labelstudio_newest_annotation_wins(tmp_path):
    paths = ann.export_sheet("evaluation", _rows("evaluation"), tmp_path / "export")
    sheet = ann.read_sheet(paths["jsonl"])
    filled = ann.simulated_annotator("evaluation", sheet, truth=_truth("evaluation", sheet))
    tasks = _labelstudio_by_hand(paths["labelstudio_tasks"], "evaluation", filled)
    newer = json.loads(json.dumps(tasks[0]["annotations"][1]))
    newer["result"][0]["value"]["choices"] = ["P2"]
    newer["updated_at"] = "2026-01-03T08:00:00.000000Z"
    tasks[0]["annotations"].insert(0, newer)
    source = tmp_path / "export.json"
    source.write_text(json.dumps(tasks))
    ann.import_sheet("evaluation", source, expected=paths["jsonl"], store_dir=tmp_path / "store")
    merged = ann.merged_view("evaluation", tmp_path / "store")
    assert merged[("pair-0", "base")]["label"] == "P2" and merged[("pair-0", "ours")]["label"] == "P0"


def test_csv_line_numbers_count_multiline_cells(tmp_path):
    expected, rows = _filled(tmp_path, "refinement")
    rows[0]["refined_instruction"] = "turn it blue\nand keep the background"
    rows[2]["refined_instruction"] = ""
    source = ann.write_sheet("refinement", rows, tmp_path / "filled.csv")
    with pytest.raises(ann.SheetImportError) as err:
        ann.import_sheet("refinement", source, expected=expected, store_dir=tmp_path / "store")
    assert [(e.row, e.field) for e in err.value.errors] == [(5, "refined_instruction")]
    assert source.read_text().splitlines()[4].startswith("pair-2,")


def test_missing_column_names_the_header(tmp_path):
    expected, rows = _filled(tmp_path, "correction")
    source = tmp_path / "filled.csv"
    with open(source, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=[c for c in rows[0] if c != "severity"], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(records.RecordError) as err:
        ann.import_sheet("correction", source, expected=expected, store_dir=tmp_path / "store", on_error="skip")
    assert (Path(err.value.file), err.value.row, err.value.field) == (source, 1, "severity")


def test_unreadable_files_are_named(tmp_path, refinement_sheet):
    paths, _ = refinement_sheet
    bad = {"missing.csv": None, "latin1.csv": "id,refined_instruction\nx,caf\xe9\n".encode("latin-1"),
           "empty.jsonl": b"  \n", "broken.json": b'[{"data": {"id": "pair-0"}'}
    for name, content in bad.items():
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(records.RecordError) as err:
            ann.import_sheet("refinement", path, expected=paths["jsonl"], store_dir=tmp_path / "store")
        assert Path(err.value.file) == path and name in str(err.value)
    path = tmp_path / "lines.jsonl"
    path.write_text('{"id": "pair-0"}\nnot json\n')
    with pytest.raises(ann.SheetImportError) as err:
        ann.import_sheet("refinement", path, expected=paths["jsonl"], store_dir=tmp_path / "store")
    assert [(e.row, e.field) for e in err.value.errors][-1] == (2, None)


def test_skip_keeps_valid_rows_and_reports_the_rest(tmp_path):
    expected, rows = _filled(tmp_path, "correction")
    rows[1]["severity"] = "P9"
    rows[3]["corrected_instruction"] = ""
    rows[3]["error_type"] = "colour"
    source = ann.write_sheet("correction", rows, tmp_path / "filled.csv")
    result = ann.import_sheet("correction", source, expected=expected, store_dir=tmp_path / "store",
                              on_error="skip")
    assert (result.n_read, result.n_accepted, result.n_rejected) == (4, 2, 2)
    assert sorted((e.row, e.field) for e in result.errors) == [(3, "severity"), (5, "corrected_instruction"),
                                                               (5, "error_type")]
    assert [r["id"] for r in result.rows] == ["pair-0", "pair-2"]
    assert len(result.stored.read_text().splitlines()) == 2
    manifest = [json.loads(l) for l in (tmp_path / "store/correction/manifest.jsonl").read_text().splitlines()]
    assert manifest[0]["accepted"] == 2 and manifest[0]["rejected"] == 2 and manifest[0]["rows_read"] == 4


# ------------------------------------------------------------------------------------ versioned store

def test_imports_are_versioned_never_overwritten_and_newest_wins(tmp_path, refinement_sheet):
    paths, sheet = refinement_sheet
    truth = _truth("refinement", sheet)
    first = ann.write_sheet("refinement", ann.simulated_annotator("refinement", sheet, truth=truth),
                            tmp_path / "round1.csv")
    one = ann.import_sheet("refinement", first, expected=paths["jsonl"], store_dir=tmp_path / "store",
                           annotator="ann-a")
    stored_bytes = one.stored.read_bytes()
    second_truth = {k: v + ", then brighten it" for k, v in truth.items()}
    second = ann.write_sheet("refinement", ann.simulated_annotator("refinement", sheet[1:3], truth=second_truth),
                             tmp_path / "round2.jsonl")
    two = ann.import_sheet("refinement", second, expected=paths["jsonl"], store_dir=tmp_path / "store",
                           annotator="ann-b")

    assert (one.stored.name, two.stored.name) == ("import-0001.jsonl", "import-0002.jsonl")
    assert one.stored.read_bytes() == stored_bytes
    merged = ann.merged_view("refinement", tmp_path / "store")
    assert {k: (r["refined_instruction"], r["import"]) for k, r in merged.items()} == {
        "pair-0": (truth["pair-0"], "import-0001.jsonl"),
        "pair-1": (second_truth["pair-1"], "import-0002.jsonl"),
        "pair-2": (second_truth["pair-2"], "import-0002.jsonl"),
        "pair-3": (truth["pair-3"], "import-0001.jsonl")}
    only_a = ann.merged_view("refinement", tmp_path / "store", annotator="ann-a")
    assert {r["refined_instruction"] for r in only_a.values()} == set(truth.values())
    manifest = [json.loads(l) for l in (tmp_path / "store/refinement/manifest.jsonl").read_text().splitlines()]
    assert [m["import"] for m in manifest] == ["import-0001.jsonl", "import-0002.jsonl"]
    assert manifest[1]["source"] == str(second.resolve()) and manifest[1]["accepted"] == 2
    assert manifest[0]["sha256"] == hashlib.sha256(first.read_bytes()).hexdigest()
    assert not list((tmp_path / "store/refinement").glob(".*tmp"))


def test_a_stored_version_is_never_replaced(tmp_path):
    taken = tmp_path / "import-0001.jsonl"
    taken.write_text("human work\n")
    assert ann.write_atomic(taken, "other\n", exclusive=True) is False
    assert taken.read_text() == "human work\n" and [p.name for p in tmp_path.iterdir()] == [taken.name]


# --------------------------------------------------------------------------------- simulated people

def _text_sheet(n):
    return [{"id": f"p{i}", "candidate_instruction": f"candidate {i}", "refined_instruction": ""} for i in range(n)]


def test_simulated_annotator_without_mistakes_returns_the_truth():
    sheet = _text_sheet(50)
    truth = {r["id"]: f"true {r['id']}" for r in sheet}
    filled = ann.simulated_annotator("refinement", sheet, truth=truth)
    assert all(r["refined_instruction"] == truth[r["id"]] and r["simulated_mistake"] == "" for r in filled)


def test_simulated_annotator_residual_mistakes_match_the_rate_and_are_recorded():
    sheet = _text_sheet(1000)
    truth = {r["id"]: f"true {r['id']}" for r in sheet}
    filled = ann.simulated_annotator("refinement", sheet, truth=truth, residual_error_rate=0.3, seed=7)
    wrong = [r for r in filled if r["refined_instruction"] != truth[r["id"]]]
    assert 0.25 < len(wrong) / 1000 < 0.35  # binomial sd 0.0145
    assert {r["id"] for r in wrong} == {r["id"] for r in filled if r["simulated_mistake"]}
    assert all(r["refined_instruction"] == r["candidate_instruction"] for r in wrong)
    assert filled == ann.simulated_annotator("refinement", sheet, truth=truth, residual_error_rate=0.3, seed=7)
    assert filled != ann.simulated_annotator("refinement", sheet, truth=truth, residual_error_rate=0.3, seed=8)


def test_simulated_label_mistakes_are_valid_and_survive_import(tmp_path):
    paths = ann.export_sheet("evaluation", _rows("evaluation"), tmp_path / "export", formats=("jsonl",))
    sheet = ann.read_sheet(paths["jsonl"])
    truth = _truth("evaluation", sheet)
    filled = ann.simulated_annotator("evaluation", sheet, truth=truth, residual_error_rate=0.5, seed=1)
    mistaken = {ann.sheet_spec("evaluation").key(r) for r in filled if r["simulated_mistake"]}
    assert 0 < len(mistaken) < len(sheet)
    source = ann.write_sheet("evaluation", filled, tmp_path / "filled.csv")
    assert "simulated_mistake" not in source.read_text().splitlines()[0]
    ann.import_sheet("evaluation", source, expected=paths["jsonl"], store_dir=tmp_path / "store")
    merged = ann.merged_view("evaluation", tmp_path / "store")
    differs = {k for k, r in merged.items() if r["label"] != truth[k]["label"]}
    assert differs == mistaken


def test_simulated_annotator_needs_truth_for_every_row():
    with pytest.raises(records.RecordError) as err:
        ann.simulated_annotator("refinement", _text_sheet(3), truth={"p0": "a", "p1": "b"})
    assert (err.value.row, err.value.field) == (3, "id")
