"""The edit-pair and preference contracts: valid rows pass, broken rows name file, row and field."""
import pytest
from PIL import Image

from editcaption import records


def _pair(**overrides):
    row = {"id": "p1", "source": "synthetic", "source_image": Image.new("RGB", (8, 8)),
           "target_image": Image.new("RGB", (8, 8), "red"), "category": "stylistic", "edit_type": "color",
           "instruction": "Change the white square to red.", "gt": records.empty_gt(),
           "changes": [records.make_change("color", "square", "color", "white", "red")]}
    row.update(overrides)
    return row


def test_a_valid_pair_round_trips_through_save_and_load(tmp_path):
    ds = records.pairs_from_rows([_pair(), _pair(id="p2")])
    records.save_pairs(ds, tmp_path / "pairs")
    back = records.load_pairs(tmp_path / "pairs")
    assert back["id"] == ["p1", "p2"] and back[0]["changes"][0]["after"] == "red"
    assert back[0]["target_image"].getpixel((0, 0)) == (255, 0, 0)


@pytest.mark.parametrize("field,value,message", [
    ("category", "geometric", "category 'geometric'"),
    ("id", "", "empty id"),
    ("instruction", None, "expected str"),
    ("target_image", None, "no image"),
    ("gt", {"primary_changes": []}, "gt must have"),
])
def test_broken_fields_are_named(field, value, message):
    with pytest.raises(records.RecordError, match=message) as info:
        records.validate_pair(_pair(**{field: value}), file="pairs.jsonl", index=3)
    assert "pairs.jsonl" in str(info.value) and f"field '{field}'" in str(info.value)


def test_missing_field_and_incomplete_change():
    row = _pair()
    del row["changes"]
    with pytest.raises(records.RecordError, match="field 'changes'"):
        records.validate_pair(row)
    with pytest.raises(records.RecordError, match=r"change 0 lacks \['primary'\]"):
        records.validate_pair(_pair(changes=[{k: "" for k in records.CHANGE_FEATURES if k != "primary"}]))


def test_preference_rows_check_labels_and_texts():
    row = {"id": "p1", "images": [], "prompt": "p", "chosen": "Move the red star left.",
           "rejected": "Move the red star right.", "error_type": "orientation", "severity": "P0"}
    records.validate_preference(row)
    with pytest.raises(records.RecordError, match="field 'severity'"):
        records.validate_preference({**row, "severity": "P3"})
    with pytest.raises(records.RecordError, match="field 'chosen'"):
        records.validate_preference({**row, "chosen": "  "})


def test_load_pairs_refuses_a_folder_that_is_not_a_dataset(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(records.RecordError, match="state.json"):
        records.load_pairs(tmp_path / "x")
    with pytest.raises(records.RecordError, match="no such file"):
        records.load_pairs(tmp_path / "nope")
