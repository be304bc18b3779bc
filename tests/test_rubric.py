"""eval.rubric: the paper's lookup tables, ceilings, tiers and checklist, including our documented choices."""
from __future__ import annotations

import math

import pytest

from editcaption import records
from editcaption import rubric
from editcaption.rubric import (
    accuracy_score,
    clarity_ceiling,
    clarity_score,
    completeness_from_coverage,
    composite,
    find_forbidden_terms,
)


def test_weights_and_composite():
    assert rubric.WEIGHTS == {"accuracy": 0.4, "completeness": 0.4, "clarity": 0.2}
    assert composite(5, 5, 5) == 5.0
    assert composite(4, 3, 2) == pytest.approx(3.2)
    assert composite(5, 4.5, 3.0) == pytest.approx(4.4)
    for bad in ((5.5, 5, 5), (5, -1, 5), (5, 5, math.nan)):
        with pytest.raises(ValueError):
            composite(*bad)


@pytest.mark.parametrize("coverage, secondary, expected", [
    (1.0, False, 5.0),
    (0.999, False, 4.5),
    (0.75, False, 4.5),
    (3 / 4, False, 4.5),
    (0.7499, False, 4.0),
    (2 / 3, False, 4.0),
    (3 / 5, False, 4.0),
    (0.5999, False, 3.0),
    (0.5, False, 3.0),
    (1 / 2, False, 3.0),
    (0.4999, False, 2.0),
    (1 / 3, False, 2.0),
    (0.2, False, 2.0),
    (1 / 5, False, 2.0),
    # the paper leaves 0 < R < 20 % open: we score it 2.0 (table 9: 16.7 % -> 2)
    (0.1999, False, 2.0),
    (1 / 6, False, 2.0),
    (0.01, False, 2.0),
    (0.0, False, 1.0),
    # +0.5 only below full coverage, capped at 5
    (0.0, True, 1.5),
    (1 / 6, True, 2.5),
    (0.5, True, 3.5),
    (0.8, True, 5.0),
    (1.0, True, 5.0),
])
def test_completeness_lookup(coverage, secondary, expected):
    assert completeness_from_coverage(coverage, secondary) == expected


def test_completeness_rejects_out_of_range():
    for bad in (-0.01, 1.01, 50, math.nan, "0.5", None):
        with pytest.raises(ValueError):
            completeness_from_coverage(bad, False)


def test_unspecified_band_is_documented():
    assert "0 < R < 0.2" in completeness_from_coverage.__doc__


def test_clarity_ceiling():
    assert [clarity_ceiling(n) for n in range(6)] == [5.0, 3.0, 2.5, 2.0, 2.0, 2.0]
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError):
            clarity_ceiling(bad)


def test_forbidden_terms_data():
    assert set(rubric.FORBIDDEN_TERMS) >= {"vague_verbs", "vague_degrees", "vague_references"}
    assert rubric.FORBIDDEN_TERMS["vague_verbs"] == ("adjust", "process", "optimize", "modify")
    assert rubric.FORBIDDEN_TERMS["vague_degrees"] == ("appropriate", "slightly", "a bit", "somewhat")
    assert {"that", "this", "it"} <= set(rubric.FORBIDDEN_TERMS["vague_references"])


@pytest.mark.parametrize("text, expected", [
    ("Move the red star to the right.", []),
    # vague degrees, case-insensitive, word boundaries
    ("Make the image SLIGHTLY darker.", ["slightly"]),
    ("Move it a bit up and make it somewhat larger.", ["it", "a bit", "it", "somewhat"]),
    ("Resize appropriately.", ["appropriately"]),
    ("Make the orbit larger.", []),  # "a bit" only as words, not inside "orbit"
    # vague verbs count only without an explicit target state in their clause
    ("Adjust the brightness.", ["adjust"]),
    ("Modify the circle to red.", []),
    ("Adjust the brightness and make the circle red.", ["adjust"]),
    ("Adjust the circle so it is larger.", []),
    ("Optimize the image to make it look better.", ["optimize", "look better"]),
    ("Process the photo; modified colors.", ["process", "modified"]),
    ("Rotate by 90 degrees, adjusting the angle.", ["adjusting"]),
    # "this"/"that": demonstratives count, conjunctions and relative pronouns do not
    ("Change the color of that piece of clothing to pink.", ["that"]),
    ("Remove that.", ["that"]),
    ("Move this to the left.", ["this"]),
    ("That circle should be red.", ["that"]),
    ("Make sure that the circle is red.", []),
    ("Move the star so that it touches the square.", []),
    ("Recolor the circle that sits on the left to blue.", []),
    # "it" counts only without anything it could refer to
    ("Make it red.", ["it"]),
    ("Change the dress to pink and shorten it.", []),
    ("Rotate the image and make its border thicker.", []),
    # references to the original image
    ("Keep the layout as in the original image.", ["as in the original image"]),
    ("Color the star like the source.", ["like the source"]),
])
def test_find_forbidden_terms(text, expected):
    assert find_forbidden_terms(text) == expected


@pytest.mark.parametrize("args, expected", [
    ((0, 0, False, 1.0, False), 5),
    ((0, 0, False, 0.5, False), 5),
    ((0, 0, False, 0.49, False), 4),   # coverage >= 30 % but < 50 %
    ((0, 0, False, 0.3, False), 4),
    ((0, 0, False, 0.29, False), 3),   # coverage < 30 %: conservative penalty
    ((0, 0, False, 0.0, False), 3),
    ((1, 0, False, 1.0, False), 3),    # one major error
    ((2, 0, False, 1.0, False), 2),    # two major errors
    ((0, 0, True, 1.0, False), 2),     # hallucination caps at 2
    ((1, 0, True, 1.0, False), 2),
    ((0, 1, False, 1.0, False), 4),    # one minor flaw: -1
    ((0, 1, False, 1 / 3, False), 4),  # table 8: "dress to pink; bag to red"
    ((0, 2, False, 1.0, False), 3),
    ((0, 5, False, 1.0, False), 2),    # minor flaws never reach "completely wrong"
    ((0, 1, False, 0.0, False), 3),
    ((0, 0, False, 0.0, True), 1),     # wrong object
    ((3, 2, True, 0.0, True), 1),
])
def test_accuracy_tiers(args, expected):
    assert accuracy_score(*args) == expected


def test_accuracy_rejects_bad_counts():
    for args in ((-1, 0, False, 1.0, False), (0, 1.5, False, 1.0, False), (0, 0, False, 1.5, False),
                 (True, 0, False, 1.0, False)):
        with pytest.raises(ValueError):
            accuracy_score(*args)


@pytest.mark.parametrize("args, expected", [
    ((0, 1.0), 5.0),
    ((0, 0.875), 4.0),
    ((0, 0.6), 4.0),
    ((0, 0.59), 3.0),
    ((0, 0.375), 3.0),
    ((0, 0.3), 3.0),
    ((0, 0.25), 2.0),
    ((0, 0.0), 1.0),
    ((1, 1.0), 3.0),      # ceiling by forbidden terms
    ((2, 1.0), 2.5),
    ((3, 1.0), 2.0),
    ((1, 0.25), 2.0),     # the lower of ceiling and level
    ((2, 0.0), 1.0),
    ((0, 1.0, 151, 4), 4.0),  # > 150 words with < 5 information points: -1
    ((0, 1.0, 151, 5), 5.0),
    ((0, 1.0, 150, 0), 5.0),
    ((0, 0.0, 200, 0), 1.0),  # never below 1
])
def test_clarity_score(args, expected):
    assert clarity_score(*args) == expected


def test_clarity_score_rejects_bad_fraction():
    with pytest.raises(ValueError):
        clarity_score(0, 1.2)


def test_checklist_matches_table6():
    rows = rubric.CHECKLIST
    assert len(rows) == 11
    assert sorted({r.id for r in rows}) == list(range(1, 9))
    assert all(r.severity in records.SEVERITIES and r.category and r.description for r in rows)
    by_id = {}
    for r in rows:
        by_id.setdefault(r.id, []).append(r.severity)
    assert by_id == {1: ["P0", "P1"], 2: ["P0", "P1"], 3: ["P0", "P1"], 4: ["P0"], 5: ["P1"], 6: ["P1"],
                     7: ["P2"], 8: ["P2"]}
    assert "viewpoint" in rows[6].category and "global" in rows[7].category


def test_hae_dpo_weights():
    assert rubric.SEVERITY_WEIGHT == {"P0": 1.0, "P1": 0.5, "P2": 0.0}
    assert rubric.TYPE_WEIGHT == {"orientation": 0.2, "viewpoint": 0.15, "detail": 0.1}
    assert set(rubric.SEVERITY_WEIGHT) == set(records.SEVERITIES)
    assert set(rubric.TYPE_WEIGHT) == set(records.ERROR_TYPES)


def test_paper_discrepancies_are_real_disagreements():
    assert rubric.PAPER_DISCREPANCIES
    for d in rubric.PAPER_DISCREPANCIES:
        assert d.paper != d.ours and d.why and d.instruction
        assert d.dimension in ("accuracy", "completeness", "clarity")
