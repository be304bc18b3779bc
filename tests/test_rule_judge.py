"""eval.judges.RuleJudge: the paper's dress example (tables 7-10), synthetic failure modes, score_file."""
from __future__ import annotations

import json
import re

import pytest
from PIL import Image

from editcaption import records
from editcaption import rubric
from editcaption.world.rule_judge import RuleJudge, score_file
from editcaption.records import RecordError, make_change

JUDGE = RuleJudge()

# Table 7 as structured changes: three primary dress changes and the secondary necklace change.
DRESS = [
    make_change("color", "dress", "color", "grey", "pink"),
    make_change("style", "dress", "strap", "wide", "spaghetti"),
    make_change("resize", "dress", "length", "midi", "mini", "shorter"),
    make_change("replace", "necklace", "necklace", "gold necklace", "silver necklace", primary=False),
]

# (table, row, instruction, dimension, published score); rows numbered top to bottom, A/B cases in turn.
PAPER_ROWS = [
    (8, 1, "Change dress to pink spaghetti-strap; necklace to silver.", "accuracy", 5),
    (8, 2, "Change dress to pink; bag to red.", "accuracy", 4),
    (8, 3, "Dress to blue.", "accuracy", 3),
    (8, 4, "Necklace to silver.", "accuracy", 3),
    (8, 5, "Long blue dress.", "accuracy", 2),
    (8, 6, "Pink dress; add hat.", "accuracy", 2),
    (8, 7, "Change car to red.", "accuracy", 1),
    (9, 1, "Change to a pink spaghetti-strap mini dress.", "completeness", 5),
    (9, 2, "Change the dress to pink and shorten it.", "completeness", 4),
    (9, 3, "Change the dress to pink.", "completeness", 3),
    (9, 4, "Change the dress style.", "completeness", 2),
    (9, 5, "Replace the necklace with a silver one.", "completeness", 1),
    (10, 1, "Replace the gray wide-strap dress with a pink spaghetti-strap mini dress; change the necklace to a "
            "silver thin chain.", "clarity", 5),
    (10, 2, "Change the dress to a pink strappy short dress; replace the necklace with a silver one.", "clarity", 4),
    (10, 3, "Change the dress to pink and swap the necklace.", "clarity", 3),
    (10, 4, "Change the color of that piece of clothing to pink.", "clarity", 2),
    (10, 5, "Optimize the image to make it look better.", "clarity", 1),
]
DISCREPANCIES = {(d.table, d.row): d for d in rubric.PAPER_DISCREPANCIES}


@pytest.mark.parametrize("table, row, instruction, dimension, paper", PAPER_ROWS,
                         ids=[f"table{t}-row{r}" for t, r, *_ in PAPER_ROWS])
def test_paper_dress_examples(table, row, instruction, dimension, paper):
    ours = JUDGE.score(DRESS, instruction)[dimension]
    if (table, row) in DISCREPANCIES:
        d = DISCREPANCIES[(table, row)]
        assert (d.instruction, d.dimension, d.paper) == (instruction, dimension, paper)
        assert ours == d.ours != paper
    else:
        assert ours == paper


def test_discrepancy_list_is_complete():
    """Every listed discrepancy is one of the paper rows; every other row is reproduced exactly."""
    rows = {(t, r) for t, r, *_ in PAPER_ROWS}
    assert set(DISCREPANCIES) <= rows
    disagree = {(t, r) for t, r, text, dim, paper in PAPER_ROWS if JUDGE.score(DRESS, text)[dim] != paper}
    assert disagree == set(DISCREPANCIES)


def test_dress_coverage_details():
    r = JUDGE.score(DRESS, "Change the dress style.")
    assert r["coverage"] == pytest.approx(0.5 / 3, abs=1e-6)  # table 9: the style counts 0.5
    r = JUDGE.score(DRESS, "Change the dress to pink and shorten it.")
    assert r["hits"] == [0, 2] and r["misses"] == [1, 3] and r["coverage"] == pytest.approx(2 / 3, abs=1e-6)
    assert r["forbidden_terms"] == []  # "it" refers back to the dress
    r = JUDGE.score(DRESS, "Long blue dress.")
    kinds = {e["change_index"]: e["reason"] for e in r["errors"] if e["severity"] == "P0"}
    assert "blue instead of pink" in kinds[0] and "reversed" in kinds[2]
    r = JUDGE.score(DRESS, "Pink dress; add hat.")
    assert any(e["type"] == "detail" and e["kind"] == "unsupported" and "hallucination" in e["reason"] for e in r["errors"])


# ----------------------------------------------------------------------------------------------
# Synthetic-style changes and the paper's three failure modes

MOVE = [make_change("move", "red star", "position", "", "", "right")]
MIRROR = [make_change("mirror", "image", "orientation", "", "", "horizontal")]
ADD = [make_change("add", "red circle", "color", "", "red", "left")]
MOVE_AND_DARKER = MOVE + [make_change("tone", "image", "brightness", "", "darker", "darker", primary=False)]


def scores(result):
    return result["accuracy"], result["completeness"], result["clarity"]


def test_correct_move_is_perfect():
    r = JUDGE.score(MOVE, "Move the red star to the right.")
    assert scores(r) == (5, 5.0, 5.0) and r["composite"] == 5.0
    assert r["errors"] == [] and r["error_type"] == "" and r["severity"] == ""
    assert r["hits"] == [0] and r["misses"] == [] and r["coverage"] == 1.0


def test_left_right_swap_is_orientation_p0_and_a_miss():
    r = JUDGE.score(MOVE, "Move the red star to the left.")
    assert (r["error_type"], r["severity"]) == ("orientation", "P0")
    assert r["misses"] == [0] and r["completeness"] == 1.0
    assert r["accuracy"] == 3  # one major error (and coverage 0)
    assert r["clarity"] == 5.0  # clear, just wrong


def test_from_to_direction_uses_the_destination():
    assert JUDGE.score(MOVE, "Move the red star from the left side to the right side.")["errors"] == []


def test_mirror_described_as_a_move_is_viewpoint_p0():
    r = JUDGE.score(MIRROR, "Move the circle to the right.")
    assert (r["error_type"], r["severity"]) == ("viewpoint", "P0")
    assert r["misses"] == [0] and r["completeness"] == 1.0
    r = JUDGE.score(MIRROR, "Flip the red circle horizontally.")
    assert (r["error_type"], r["severity"]) == ("viewpoint", "P0") and r["misses"] == [0]
    assert JUDGE.score(MIRROR, "Flip the whole image horizontally.")["errors"] == []


def test_viewpoint_reversals():
    r = JUDGE.score(MIRROR, "Flip the whole image vertically.")
    assert (r["error_type"], r["severity"]) == ("viewpoint", "P0") and r["misses"] == [0]
    zoom = [make_change("zoom", "camera", "zoom", "", "", "in")]
    assert JUDGE.score(zoom, "Zoom in on the center of the image.")["errors"] == []
    r = JUDGE.score(zoom, "Zoom out to show more of the scene.")
    assert (r["error_type"], r["severity"]) == ("viewpoint", "P0")
    rotate = [make_change("rotate", "image", "rotation", "0", "90", "clockwise")]
    assert JUDGE.score(rotate, "Rotate the whole image 90 degrees clockwise.")["errors"] == []
    r = JUDGE.score(rotate, "Rotate the whole image 90 degrees anti-clockwise.")
    assert (r["error_type"], r["severity"]) == ("orientation", "P0")


def test_add_without_colour_is_detail_p0_with_lower_clarity():
    r = JUDGE.score(ADD, "Add a circle on the left.")
    assert (r["error_type"], r["severity"]) == ("detail", "P0")
    assert r["clarity"] < 5 and r["completeness"] == 5.0 and r["accuracy"] == 5  # an omission, not an error
    assert JUDGE.score(ADD, "Add a red circle on the left side.")["errors"] == []


def test_add_remove_reversed_is_a_miss():
    r = JUDGE.score(ADD, "Remove the red circle on the left.")
    assert r["misses"] == [0] and (r["error_type"], r["severity"]) == ("detail", "P0")
    remove = [make_change("remove", "blue square", "color", "blue", "")]
    assert JUDGE.score(remove, "Delete the blue square.")["errors"] == []
    r = JUDGE.score(remove, "Remove the red square.")
    assert r["hits"] == [0] and r["accuracy"] == 3 and r["error_type"] == "detail"


def test_wrong_colour_is_detail_p0():
    change = [make_change("color", "yellow triangle", "color", "yellow", "purple")]
    assert JUDGE.score(change, "Change the yellow triangle to purple.")["errors"] == []
    r = JUDGE.score(change, "Change the yellow triangle to green.")
    assert (r["error_type"], r["severity"]) == ("detail", "P0")
    assert r["hits"] == [0] and r["accuracy"] == 3 and r["completeness"] == 5.0  # wrong attribute still hits


def test_missing_brightness_secondary_is_detail_p1():
    r = JUDGE.score(MOVE_AND_DARKER, "Move the red star to the right.")
    assert (r["error_type"], r["severity"]) == ("detail", "P1")
    assert r["completeness"] == 5.0 and r["misses"] == [1]
    r = JUDGE.score(MOVE_AND_DARKER, "Move the red star to the right and make the whole image darker.")
    assert r["errors"] == [] and r["composite"] == 5.0
    r = JUDGE.score(MOVE_AND_DARKER, "Move the red star to the right and make the whole image brighter.")
    assert (r["error_type"], r["severity"]) == ("detail", "P1") and r["accuracy"] == 4  # minor error


def test_secondary_bonus():
    two = MOVE + [make_change("color", "blue circle", "color", "blue", "green"),
                  make_change("tone", "image", "brightness", "", "darker", "darker", primary=False)]
    r = JUDGE.score(two, "Move the red star to the right. Make the image darker.")
    assert r["coverage"] == 0.5 and r["completeness"] == 3.5


def test_forbidden_terms_cap_clarity():
    r = JUDGE.score(MOVE, "Move the red star slightly to the right.")
    assert r["forbidden_terms"] == ["slightly"] and r["clarity"] == 3.0
    assert (r["error_type"], r["severity"]) == ("detail", "P2")  # vague but executable
    assert r["accuracy"] == 5 and r["completeness"] == 5.0
    r = JUDGE.score(MOVE, "Move the red star a bit to the right, somewhat.")
    assert r["clarity"] == 2.5
    r = JUDGE.score(MOVE, "Adjust this star appropriately to the right, slightly.")
    assert len(r["forbidden_terms"]) >= 3 and r["clarity"] == 2.0


def test_same_noun_objects_are_told_apart_by_colour():
    changes = [make_change("replace", "brown heart", "object", "brown heart", "yellow star"),
               make_change("color", "purple heart", "color", "purple", "cyan", primary=False)]
    text = "Turn the brown heart into a yellow star. Also, change the color of the purple heart from purple to cyan."
    assert JUDGE.score(changes, text)["errors"] == []
    r = JUDGE.score([make_change("move", "red star", "position", "", "", "up")], "Move the blue star up.")
    assert r["error_type"] == "detail" and r["accuracy"] == 3  # the object is called by the wrong colour


def test_hallucinated_and_unchanged_elements():
    r = JUDGE.score(MOVE, "Move the red star to the right and add a green hat.")
    assert r["accuracy"] == 2 and (r["error_type"], r["severity"]) == ("detail", "P0")
    r = JUDGE.score(MOVE, "Move the red star to the right; bag to blue.")
    assert r["accuracy"] == 4 and (r["error_type"], r["severity"]) == ("detail", "P1")
    r = JUDGE.score(MOVE, "Move the red star to the right, keeping everything else unchanged.")
    assert r["errors"] == []


def test_move_described_as_add():
    r = JUDGE.score(MOVE, "Put a red star on the right.")
    assert r["error_type"] == "detail" and r["accuracy"] == 3


def test_every_synthetic_op_scores_clean_when_described_well():
    cases = [
        (make_change("background", "background", "color", "white", "navy"),
         "Change the background from white to navy."),
        (make_change("style", "image", "style", "plain", "pixelated"), "Render the image in a pixelated style."),
        (make_change("material", "green circle", "texture", "solid", "striped"),
         "Give the green circle a striped texture."),
        (make_change("resize", "blue heart", "size", "small", "large", "larger"), "Make the blue heart larger."),
        (make_change("motion", "red arrow", "pose", "pointing left", "pointing up", "up"),
         "Turn the red arrow to point up."),
        (make_change("text", "red sign", "text", "SHOP", "OPEN"), "Change the text on the sign from SHOP to OPEN."),
        (make_change("replace", "red square", "object", "red square", "green star"),
         "Replace the red square with a green star."),
    ]
    for change, text in cases:
        r = JUDGE.score([change], text)
        assert (r["composite"], r["errors"]) == (5.0, []), (text, r)


def test_score_pair_and_input_errors():
    assert JUDGE.score_pair({"id": "x", "changes": MOVE}, "Move the red star right.")["composite"] == 5.0
    with pytest.raises(RecordError, match="changes"):
        JUDGE.score_pair({"id": "x"}, "Move the red star right.")
    with pytest.raises(ValueError, match="empty"):
        JUDGE.score(MOVE, "  ")
    with pytest.raises(ValueError, match="no changes"):
        JUDGE.score([], "Move the red star right.")
    with pytest.raises(ValueError, match="change 0"):
        JUDGE.score([{"op": "move"}], "Move the red star right.")
    with pytest.raises(ValueError, match="change 1"):
        JUDGE.score(MOVE + [dict(MOVE[0], object=None)], "Move the red star right.")


# ----------------------------------------------------------------------------------------------
# score_file


def _pairs():
    image = Image.new("RGB", (4, 4), "white")
    rows = []
    for pair_id, changes in (("p1", MOVE), ("p2", MIRROR), ("p3", [])):
        rows.append({"id": pair_id, "source": "synthetic", "source_image": image, "target_image": image,
                     "category": "structural", "edit_type": "move", "instruction": "", "gt": records.empty_gt(),
                     "changes": changes})
    return records.pairs_from_rows(rows)


def _write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_score_file_writes_scores_and_summary(tmp_path):
    src = _write(tmp_path / "ins.jsonl", [json.dumps({"id": "p1", "instruction": "Move the red star to the right."}),
                                          "",
                                          json.dumps({"id": "p2", "instruction": "Move the circle to the right."})])
    summary = score_file(_pairs(), src, tmp_path / "out" / "scores.jsonl")
    lines = [json.loads(x) for x in (tmp_path / "out" / "scores.jsonl").read_text().splitlines()]
    assert [x["id"] for x in lines] == ["p1", "p2"]
    assert lines[0]["composite"] == 5.0 and lines[1]["error_type"] == "viewpoint"
    assert summary["n"] == 2 and summary["clean"] == 1
    assert summary["composite"] == pytest.approx((lines[0]["composite"] + lines[1]["composite"]) / 2)
    assert summary["error_counts"]["viewpoint"]["P0"] == 1
    assert sum(summary["problems"].values()) == 0
    assert JUDGE.score_file(_pairs(), src, tmp_path / "again.jsonl")["composite"] == summary["composite"]


BAD_LINES = [
    ("bad_json", "{not json", None),
    ("bad_json", "[1, 2]", None),
    ("missing_field", json.dumps({"instruction": "Move it."}), "id"),
    ("missing_field", json.dumps({"id": "p1"}), "instruction"),
    ("missing_field", json.dumps({"id": "p1", "instruction": 3}), "instruction"),
    ("empty_instruction", json.dumps({"id": "p1", "instruction": " "}), "instruction"),
    ("unknown_id", json.dumps({"id": "nope", "instruction": "Move the red star right."}), "id"),
    ("no_changes", json.dumps({"id": "p3", "instruction": "Move the red star right."}), "id"),
]


@pytest.mark.parametrize("kind, line, field", BAD_LINES, ids=[f"{k}-{i}" for i, (k, _, _) in enumerate(BAD_LINES)])
def test_score_file_raises_naming_file_line_field(tmp_path, kind, line, field):
    good = json.dumps({"id": "p2", "instruction": "Flip the whole image horizontally."})
    src = _write(tmp_path / "ins.jsonl", [good, line])
    with pytest.raises(RecordError) as info:
        score_file(_pairs(), src, tmp_path / "scores.jsonl")
    err = info.value
    assert err.file == src and err.row == 2 and err.field == field
    assert str(src) in str(err) and "row 2" in str(err)


def test_score_file_duplicate_id(tmp_path):
    line = json.dumps({"id": "p1", "instruction": "Move the red star right."})
    src = _write(tmp_path / "ins.jsonl", [line, line])
    with pytest.raises(RecordError, match="twice"):
        score_file(_pairs(), src, tmp_path / "scores.jsonl")


def test_score_file_counts_problems(tmp_path):
    good = json.dumps({"id": "p1", "instruction": "Move the red star to the right."})
    src = _write(tmp_path / "ins.jsonl", [good] + [line for _, line, _ in BAD_LINES] + [good])
    summary = score_file(_pairs(), src, tmp_path / "scores.jsonl", on_error="count")
    assert summary["n"] == 1
    assert summary["problems"] == {"bad_json": 2, "missing_field": 3, "empty_instruction": 1, "unknown_id": 1,
                                   "duplicate_id": 1, "no_changes": 1}
    assert summary["problem_lines"]["bad_json"] == [2, 3] and summary["problem_lines"]["duplicate_id"] == [10]
    assert len((tmp_path / "scores.jsonl").read_text().splitlines()) == 1


def test_score_file_arguments(tmp_path):
    with pytest.raises(RecordError, match="no such file"):
        score_file(_pairs(), tmp_path / "missing.jsonl", tmp_path / "out.jsonl")
    with pytest.raises(ValueError, match="on_error"):
        score_file(_pairs(), tmp_path / "missing.jsonl", tmp_path / "out.jsonl", on_error="skip")


# ----------------------------------------------------------------------------------------------
# The contract with the synthetic generator


def test_generator_reference_instructions_score_five():
    from editcaption.world import synthetic

    rows = synthetic.generate_pairs(120, seed=0, progress=False).select_columns(["instruction", "changes"]).to_list()
    perfect = sum(JUDGE.score(r["changes"], r["instruction"])["composite"] == 5.0 for r in rows)
    assert perfect >= 0.99 * len(rows)
    swapped = 0
    for r in rows:
        if any(c["direction"] in ("left", "right") for c in r["changes"]):
            text = re.sub(r"\b(left|right)\b", lambda m: "right" if m.group() == "left" else "left", r["instruction"])
            if text != r["instruction"]:
                swapped += 1
                result = JUDGE.score(r["changes"], text)
                assert (result["error_type"], result["severity"]) == ("orientation", "P0"), text
    assert swapped > 0


@pytest.mark.parametrize("changes, text, expected", [
    ([make_change("move", "red star", "position", direction="left")], "Move the red star.", "orientation"),
    ([make_change("add", "blue circle", "color", "", "blue", "up")], "Add a blue circle.", "orientation"),
    ([make_change("add", "blue circle", "color", "", "blue", "up")], "Add a circle at the top.", "detail"),
    ([make_change("mirror", "image", "orientation", direction="horizontal")], "Flip the whole image.", "viewpoint"),
    ([make_change("tone", "image", "brightness", "", "darker", "darker")], "Change the brightness of the image.",
     "detail"),
])
def test_an_omitted_direction_is_an_orientation_error_and_an_omitted_value_a_detail_error(changes, text, expected):
    result = JUDGE.score(changes, text)
    assert (result["error_type"], result["severity"]) == (expected, "P0"), result["errors"]
    assert any(e["reason"].endswith("not stated") for e in result["errors"])


def test_clause_spans_cover_the_text_and_carry_the_matched_changes():
    changes = [make_change("move", "red star", "position", direction="left"),
               make_change("color", "blue circle", "color", "blue", "green")]
    text = "Move the red star to the left, and recolor the blue circle green. Also, add a hat."
    views = JUDGE.clauses(changes, text)
    pieces = [text[v.start:v.end].strip() for v in views]
    assert pieces == ["Move the red star to the left", "recolor the blue circle green", "Also", "add a hat"]
    assert [v.mentions for v in views] == [(0,), (1,), (1,), ()] and [v.unsupported for v in views][-1]


# ----------------------------------------------------------------------------------------------
# Table 6, case by case: what the judge must flag (issue 26)

MOVE_CYAN = [make_change("move", "cyan circle", "position", direction="right")]
RECOLOR_STAR = [make_change("color", "green star", "color", "green", "blue")]
RECOLOR_RING = [make_change("color", "pink ring", "color", "pink", "blue")]
REPLACE_HEART = [make_change("replace", "brown heart", "shape", "brown heart", "yellow star")]
REFERENCE = "Slide the cyan circle to the right."


@pytest.mark.parametrize("changes, text, expected, kind", [
    # the four cases the issue found scored 5.0 with no error
    (MOVE_CYAN, "Flip the whole image horizontally, and slide the cyan circle to the right.", ("viewpoint", "P0"),
     "unsupported"),  # row 4: a viewpoint change stated that did not happen
    (MOVE_CYAN, "Slide the cyan circle to the right, and make the whole image darker.", ("detail", "P1"),
     "unsupported"),  # row 5: a global visual attribute that did not change
    (MOVE_CYAN, " ".join([REFERENCE] * 5), ("detail", "P2"), "redundant"),  # row 7: repetitive
    (RECOLOR_STAR, "Change the green star to blue, and recolor the pink ring pink.", ("detail", "P2"),
     "redundant"),  # row 7: meaningless (a no-op on an untouched object)
    # more of rows 4, 5 and 7
    (MOVE_CYAN, "Slide the cyan circle to the right, and rotate it 90 degrees clockwise.", ("viewpoint", "P0"),
     "unsupported"),
    (MOVE_CYAN, "Slide the cyan circle to the right and zoom in on the center of the image.", ("viewpoint", "P0"),
     "unsupported"),
    (MOVE_CYAN, "Slide the cyan circle to the right. Also, convert the whole image to outline style.",
     ("detail", "P1"), "unsupported"),
    (MOVE_CYAN, "Slide the cyan circle to the right, and make the background gray.", ("detail", "P1"), "unsupported"),
    (MOVE_CYAN, "Slide the cyan circle to the right. Shift the cyan circle to the right.", ("detail", "P2"),
     "redundant"),  # the same change said again in other words
    (RECOLOR_RING, "Change the pink ring to blue, and recolor the pink ring pink.", ("detail", "P2"), "redundant"),
    # rows 2 and 3: fabricated operations on the edited object or anywhere, and remove + add for a replacement
    (MOVE_CYAN, "Slide the cyan circle to the right and add a red star.", ("detail", "P0"), "unsupported"),
    (RECOLOR_RING, "Change the pink ring to blue and move it to the left.", ("detail", "P0"), "op"),
    (REPLACE_HEART, "Remove the brown heart and add a yellow star.", ("detail", "P0"), "op"),
    (MOVE_CYAN, "Remove the cyan circle.", ("detail", "P0"), "op"),
])
def test_table_6_cases_are_flagged_with_their_type_and_severity(changes, text, expected, kind):
    result = JUDGE.score(changes, text)
    assert (result["error_type"], result["severity"]) == expected, result["errors"]
    assert any(e["kind"] == kind for e in result["errors"]), result["errors"]
    assert result["composite"] < 5.0


def test_viewpoint_claims_are_hallucinations_and_redundancy_costs_clarity():
    flip = JUDGE.score(MOVE_CYAN, "Flip the whole image horizontally, and slide the cyan circle to the right.")
    assert flip["accuracy"] == 2  # listing B.1: a fabricated operation caps accuracy at 2
    darker = JUDGE.score(MOVE_CYAN, "Slide the cyan circle to the right, and make the whole image darker.")
    assert darker["accuracy"] == 4  # an edit of an element no change touches: a minor error
    repeated = JUDGE.score(MOVE_CYAN, " ".join([REFERENCE] * 2))
    assert (repeated["accuracy"], repeated["completeness"], repeated["clarity"]) == (5, 5, 3.0)


def test_what_the_pair_does_show_is_not_flagged():
    """A global clause the pair has, a pointing change told as a rotation, a background told as a recolouring,
    keep-clauses and a clause that goes on about the same change are all clean."""
    cases = [
        ([make_change("zoom", "image", "zoom", direction="out")], "Zoom out, leaving an empty margin around the scene."),
        ([make_change("motion", "black arrow", "pose", "right", "up", "up")], "Rotate the black arrow to point up."),
        ([make_change("background", "background", "color", "mint", "white")], "Recolor the background white."),
        (RECOLOR_RING, "Change the pink ring to blue, keeping the background white."),
        (MOVE_CYAN, "Slide the cyan circle to the right, keeping everything else unchanged."),
        ([make_change("move", "red star", "position", direction="left"),
          make_change("mirror", "image", "orientation", direction="horizontal")],
         "Move the red star to the left, then flip the whole image horizontally."),
    ]
    for changes, text in cases:
        assert JUDGE.score(changes, text)["errors"] == [], text


def test_every_reference_instruction_is_clean():
    """3,000 generated pairs of every edit type (one to four changes): not one reference has an error."""
    from editcaption.world import synthetic

    rows = synthetic.generate_pairs(3000, seed=5, size=64, progress=False).select_columns(
        ["instruction", "changes", "edit_type"]).to_list()
    assert {r["edit_type"] for r in rows} >= {"move", "mirror", "rotate", "zoom", "tone", "style", "hybrid", "text"}
    flagged = [(r["instruction"], JUDGE.score(r["changes"], r["instruction"])["errors"]) for r in rows]
    assert [f for f in flagged if f[1]] == []


def test_agreement_with_the_hand_labelled_set():
    """112 instructions labelled by hand from table 6 (eval.judge_agreement); the judge's worst error (mode and
    severity) must match at least 95 % of them. Where they differ is listed in the README (two of 112 on the day
    the set was written: "Remove the heart." wants the colour, a move of an untouched object is P1 to the judge)."""
    from editcaption.eval import judge_agreement

    frame = judge_agreement.judged_labels()
    result = judge_agreement.agreement(frame)
    assert result["n"] == 112 and len(set(frame["id"])) == 112
    assert result["exact"] >= 0.95 and result["severity_kappa"] >= 0.9, result
    assert (frame["label_severity"] == "").sum() >= 25 and result["clean_vs_error"] >= 0.98
    rows = set(frame["table6_row"])
    assert {1, 2, 3, 4, 5, 7} <= rows  # every row the judge can see without the images


def test_a_broken_label_file_is_named(tmp_path):
    from editcaption.eval import judge_agreement

    bad = tmp_path / "labels.jsonl"
    bad.write_text('{"id": "a", "changes": [], "instruction": "x", "type": "", "severity": ""}\n{broken\n')
    with pytest.raises(RecordError, match=r"labels\.jsonl.*2"):
        judge_agreement.load_labels(bad)
    bad.write_text('{"id": "a", "instruction": "x"}\n')
    with pytest.raises(RecordError, match="changes"):
        judge_agreement.load_labels(bad)
