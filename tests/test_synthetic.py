"""Synthetic edit pairs: determinism, the category mix, the contract, grid alignment, texts."""
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from editcaption import records
from editcaption.world import synthetic
from editcaption.world import texts
from editcaption.vocab import BACKGROUNDS, COLORS, SIGN_WORDS

FORBIDDEN = re.compile(r"\b(adjust|process|optimize|modify|appropriate|slightly|a bit|somewhat|that|this|it)\b"
                       r"|refer to (the )?original image", re.IGNORECASE)
OBJECT_OPS = {"add", "remove", "replace", "color", "material", "move", "resize", "motion", "text"}


@pytest.fixture(scope="module")
def pairs():
    return synthetic.generate_pairs(200, seed=0, progress=False)


def _array(image) -> np.ndarray:
    return np.asarray(image.convert("RGB"), dtype=np.int16)


def _changed_cells(row, cell=32) -> list[tuple[int, int]]:
    diff = np.abs(_array(row["source_image"]) - _array(row["target_image"])).sum(axis=2)
    n = diff.shape[0] // cell
    return [(r, c) for r in range(n) for c in range(n) if diff[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].any()]


def test_same_seed_writes_byte_identical_folders(tmp_path):
    folders = [synthetic.write_pairs(synthetic.generate_pairs(30, seed=s, progress=False), tmp_path / name)
               for s, name in ((5, "a"), (5, "b"), (6, "c"))]
    files = sorted(p.name for p in folders[0].iterdir())
    assert files == sorted(p.name for p in folders[1].iterdir())
    assert any(f.endswith(".arrow") for f in files)
    for name in files:
        assert (folders[0] / name).read_bytes() == (folders[1] / name).read_bytes(), name
    arrow = next(f for f in files if f.endswith(".arrow"))
    assert (folders[0] / arrow).read_bytes() != (folders[2] / arrow).read_bytes()


def test_category_mix_is_within_five_points(pairs):
    shares = {c: k / len(pairs) for c, k in Counter(pairs["category"]).items()}
    for category, goal in synthetic.DEFAULT_MIX.items():
        assert abs(shares[category] - goal) <= 0.05, shares
    custom = synthetic.generate_pairs(40, seed=1, mix={"semantic": 1.0}, progress=False)
    assert set(custom["category"]) == {"semantic"}


def test_every_row_follows_the_contract(pairs):
    for i, row in enumerate(pairs):
        records.validate_pair(row, index=i)
        assert row["id"] == f"syn-0-{i:06d}" and row["source"] == "synthetic"
        assert row["edit_type"] in synthetic.EDIT_TYPES[row["category"]]
        assert row["source_image"].size == row["target_image"].size == (128, 128)
        changes = row["changes"]
        primary = [c for c in changes if c["primary"]]
        if row["edit_type"] == "hybrid":
            assert 2 <= len(primary) <= 3
        else:
            assert [c["op"] for c in primary] == [row["edit_type"]]
        assert len(row["gt"]["primary_changes"]) == len(primary)
        assert len(row["gt"]["secondary_changes"]) == len(changes) - len(primary)
        for c in changes:
            for key in ("op", "object", "attribute", "before", "after", "direction"):
                value = c[key]
                assert value == value.lower() or value in SIGN_WORDS, (row["id"], key, value)


def test_every_edit_type_appears_and_secondary_share_is_exact(pairs):
    seen = Counter(pairs["edit_type"])
    assert set(seen) == {t for types in synthetic.EDIT_TYPES.values() for t in types}
    with_secondary = sum(any(not c["primary"] for c in ch) for ch in pairs["changes"])
    assert with_secondary == round(0.3 * len(pairs))
    ops = Counter(c["op"] for ch in pairs["changes"] for c in ch if not c["primary"])
    assert set(ops) == {"tone", "color"}


def test_grid_objects_stay_in_their_cells(pairs):
    """Object edits change exactly the cells involved: two for a move, one for any other object edit."""
    checked = 0
    for row in pairs:
        ops = [c["op"] for c in row["changes"]]
        if not set(ops) <= OBJECT_OPS:
            continue
        cells = _changed_cells(row)
        assert len(cells) == sum(2 if op == "move" else 1 for op in ops), (row["id"], ops, cells)
        checked += 1
    assert checked > 30


def test_a_move_goes_the_stated_way(pairs):
    moves = [r for r in pairs if r["edit_type"] == "move" and len(r["changes"]) == 1]
    assert len(moves) >= 5
    for row in moves:
        direction = row["changes"][0]["direction"]
        (r0, c0), (r1, c1) = _changed_cells(row)
        target = _array(row["target_image"])
        vacated_first = np.all(target[r0 * 32:(r0 + 1) * 32, c0 * 32:(c0 + 1) * 32] == target[r0 * 32, c0 * 32])
        (fr, fc), (tr, tc) = ((r0, c0), (r1, c1)) if vacated_first else ((r1, c1), (r0, c0))
        step = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[direction]
        assert (np.sign(tr - fr), np.sign(tc - fc)) == step, (row["id"], direction)
        assert re.search(rf"\b{direction}\b", row["instruction"]), row["instruction"]


@pytest.mark.parametrize("op, transforms", [
    ("mirror", {"horizontal": Image.Transpose.FLIP_LEFT_RIGHT, "vertical": Image.Transpose.FLIP_TOP_BOTTOM}),
    ("rotate", {"clockwise": Image.Transpose.ROTATE_270, "counterclockwise": Image.Transpose.ROTATE_90}),
])
def test_viewpoint_changes_transform_the_whole_image(pairs, op, transforms):
    rows = [r for r in pairs if r["edit_type"] == op and len(r["changes"]) == 1]
    assert rows
    for row in rows:
        expected = row["source_image"].transpose(transforms[row["changes"][0]["direction"]])
        assert np.array_equal(_array(expected), _array(row["target_image"])), row["id"]


def test_instructions_name_every_change_without_forbidden_terms(pairs):
    for row in pairs:
        text = row["instruction"]
        assert not FORBIDDEN.search(text), text
        assert text[0].isupper() and text.endswith(".") and "  " not in text
        lower = text.lower()
        for c in row["changes"]:
            if c["op"] in OBJECT_OPS - {"add"}:
                assert c["object"] in lower, (c, text)
            if c["op"] in ("add", "color", "background", "replace", "tone", "material", "style"):
                assert c["after"].split("-")[0] in lower, (c, text)
            if c["op"] in ("move", "motion", "rotate", "resize", "tone"):
                assert re.search(rf"\b{c['direction']}\b", lower), (c, text)
            if c["op"] == "mirror":
                assert re.search(rf"\b{c['direction']}", lower), (c, text)
            if c["op"] == "zoom":
                assert f"zoom {c['direction']}" in lower, (c, text)
            if c["op"] == "text":
                assert c["after"] in text


def test_texts_from_hand_written_changes():
    import random

    changes = [records.make_change("color", "dress", "color", "grey", "pink"),
               records.make_change("tone", "image", "brightness", "", "darker", "darker", primary=False)]
    text = texts.render_reference_instruction(changes, random.Random(0))
    assert "grey dress" in text and "pink" in text and "darker" in text and not FORBIDDEN.search(text)
    gt = texts.gt_texts(changes)
    assert gt["primary_changes"] == ["The grey dress changes color from grey to pink."]
    assert gt["secondary_changes"] == ["The whole image becomes darker."]
    assert gt["overall"].startswith("The grey dress") and "side effect" in gt["overall"]


def test_load_pairs_round_trip(tmp_path, pairs):
    small = pairs.select(range(12))
    loaded = records.load_pairs(synthetic.write_pairs(small, tmp_path / "pairs"))
    assert loaded["id"] == small["id"] and loaded["changes"] == small["changes"] and loaded["gt"] == small["gt"]
    assert np.array_equal(_array(loaded[3]["target_image"]), _array(small[3]["target_image"]))
    for i, row in enumerate(loaded):
        records.validate_pair(row, index=i)


def test_free_layout_and_three_by_three_grid():
    free = synthetic.generate_pairs(32, seed=2, size=96, layout="free", progress=False)
    grid = synthetic.generate_pairs(32, seed=2, size=96, progress=False)
    for ds in (free, grid):
        assert len(ds) == 32 and ds[0]["source_image"].size == (96, 96)
        assert all(np.any(_array(r["source_image"]) != _array(r["target_image"])) for r in ds)
    assert all(len(_changed_cells(r)) == 1 for r in grid if r["edit_type"] in ("color", "remove")
               and len(r["changes"]) == 1)


def test_scene_colours_come_from_the_vocabulary(pairs):
    for c in (c for ch in pairs["changes"] for c in ch):
        if c["op"] == "background":
            assert {c["before"], c["after"]} <= set(BACKGROUNDS)
        if c["op"] in ("color", "add"):
            assert c["after"] in COLORS


@pytest.mark.parametrize("kwargs, message", [
    ({"size": 100}, "multiple of cell"),
    ({"layout": "spiral"}, "layout"),
    ({"mix": {"semantic": 1, "funny": 1}}, "mix"),
    ({"n": 0}, "n must be"),
])
def test_bad_arguments_raise_clear_errors(kwargs, message):
    args = {"n": 4, "progress": False, **kwargs}
    with pytest.raises(ValueError, match=message):
        synthetic.generate_pairs(**args)


def test_edit_types_restrict_the_world_and_unknown_names_are_refused():
    ds = synthetic.generate_pairs(24, seed=3, size=96, edit_types=["move", "color", "add"], progress=False)
    assert set(ds["edit_type"]) == {"move", "color", "add"}
    assert set(ds["category"]) == {"structural", "stylistic", "semantic"}
    with pytest.raises(ValueError, match="unknown \\['jump'\\]"):
        synthetic.generate_pairs(4, seed=3, size=96, edit_types=["move", "jump"], progress=False)


def test_max_objects_caps_the_source_scene():
    def occupied_cells(image) -> int:  # grid cells holding anything but the background (pixel 0,0 is margin)
        px = np.asarray(image.convert("RGB")).astype(int)
        background = px[0, 0]
        return sum(bool((np.abs(px[r:r + 32, c:c + 32] - background).sum(axis=2) > 30).any())
                   for r in range(0, 96, 32) for c in range(0, 96, 32))

    capped = synthetic.generate_pairs(30, seed=4, size=96, edit_types=["move", "color", "tone"], max_objects=1, progress=False)
    assert max(occupied_cells(img) for img in capped["source_image"]) == 1
    free = synthetic.generate_pairs(30, seed=4, size=96, edit_types=["move", "color", "tone"], progress=False)
    assert max(occupied_cells(img) for img in free["source_image"]) > 1
    with pytest.raises(ValueError, match="max_objects must be >= 0"):
        synthetic.generate_pairs(2, seed=4, size=96, max_objects=-1, progress=False)


def test_every_op_has_its_row_of_texts_and_every_field_is_known():
    """world.texts.TEXTS: one row per op the generator makes (zoom: one per direction), each template filled from
    `_words`; a change of an unknown op takes the "other" rows."""
    import string

    from editcaption.world import texts
    from editcaption.world.synthetic import OPS

    rows = set(texts.TEXTS) - {"zoom in", "zoom out", "other", "other, no before"}
    assert rows == set(OPS) - {"zoom"}
    change = {"op": "move", "object": "red star", "attribute": "position", "before": "b2", "after": "b3",
              "direction": "right", "primary": True}
    known = set(texts._words(change))
    for clauses, sentence in texts.TEXTS.values():
        fields = {f for t in (*clauses, sentence) for _, f, _, _ in string.Formatter().parse(t) if f}
        assert fields <= known, fields - known
    assert texts.clause_options(change)[0] == "move the red star to the right"
    assert texts.clause_options({**change, "op": "warp"}) == ["change the position of the red star from b2 to b3"]
