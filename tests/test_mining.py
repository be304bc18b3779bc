"""data.mining: K seeded samples per pair, every candidate judged, pass@1 / pass@K, the rejected pick."""
from __future__ import annotations

import pytest

from editcaption.data import mining
from editcaption.world.synthetic import generate_pairs
from editcaption.records import make_change

MOVE_LEFT = [make_change("move", "red star", "position", direction="left")]
RIGHT, WRONG, NONE = "Move the red star to the left.", "Move the red star to the right.", "Add a hat to the car."


def _mined(candidates):
    ids = list(candidates)
    return mining.mine({"id": ids, "edit_type": ["move"] * (len(ids) - 1) + ["color"],
                        "changes": [MOVE_LEFT] * len(ids)}, candidates)


def test_every_candidate_is_judged_and_the_greedy_failure_is_rejected_first():
    mined = _mined({"a": [WRONG, RIGHT, WRONG], "b": [RIGHT, RIGHT, WRONG], "c": [RIGHT, RIGHT, RIGHT],
                    "d": ["", NONE, "."]})
    assert [v.kind for v in mined.verdicts["a"]] == ["rejected", "clean", "rejected"]
    assert mined.verdicts["a"][0].error_type == "orientation" and mined.verdicts["a"][0].p0
    # by default only greedy failures are rejected (what is evaluated); a failing sample is the option
    assert mined.rejected() == {"a": 0} and mined.n_samples == 2
    assert mined.rejected("greedy-or-sample") == {"a": 0, "b": 2}
    assert mined.clean_alternatives() == {"a": [RIGHT], "b": [RIGHT], "c": [RIGHT], "d": []}
    assert [mined.pair_kind(p, "greedy") for p in "abcd"] == ["rejected", "clean", "clean", "off_topic"]
    assert [mined.pair_kind(p, "greedy-or-sample") for p in "abcd"] == ["rejected", "rejected", "clean", "off_topic"]
    assert [mined.pair_kind(p) for p in "abcd"] == [mined.pair_kind(p, "greedy") for p in "abcd"]  # one default
    summary = mined.summary()
    assert summary["n_rejected"] == 1 and summary["rejected_from"] == {"greedy": 1}
    summary = mined.summary("greedy-or-sample")
    assert summary["n_rejected"] == 2 and summary["rejected_from"] == {"greedy": 1, "sample": 1}
    assert summary["pair_kinds"]["off_topic"] == 1 and summary["n_candidates"] == 12
    with pytest.raises(ValueError, match="rejected_from"):
        mined.rejected("samples")


def test_pass_at_1_and_pass_at_k_per_edit_type():
    table = _mined({"a": [WRONG, RIGHT, WRONG], "b": [RIGHT, WRONG, WRONG], "c": [RIGHT, RIGHT, RIGHT],
                    "d": [WRONG, WRONG, WRONG]}).pass_rates()
    move = table.loc["move"]  # a, b, c: samples pass 1/2, 0/2, 2/2
    assert move["pairs"] == 3 and move["greedy_p0"] == pytest.approx(2 / 3)
    assert move["pass@1_p0"] == pytest.approx(0.5) and move["pass@K_p0"] == pytest.approx(2 / 3)
    assert table.loc["color", "pass@K_p0"] == 0 and table.loc["all", "pairs"] == 4
    notes = mining.headroom_notes(table)
    assert any(n.startswith("color:") and "rarely writes a right answer" in n for n in notes)
    assert any(n.startswith("move:") for n in notes)


MOVE_UP = [make_change("move", "red star", "position", direction="up")]
UP, DOWN = "Move the red star up.", "Move the red star down."


def test_pass_rates_add_a_row_per_move_axis_after_move():
    hybrid = MOVE_LEFT + [make_change("color", "blue ball", "color", "red", "blue")]
    mined = mining.mine({"id": list("abcdef"), "edit_type": ["move", "move", "move", "move", "color", "hybrid"],
                         "changes": [MOVE_LEFT, MOVE_LEFT, MOVE_UP, MOVE_UP, [make_change("color", "blue ball", "color",
                                                                                           "red", "blue")], hybrid]},
                        {"a": [WRONG, RIGHT, WRONG], "b": [RIGHT, WRONG, WRONG], "c": [DOWN, UP, UP],
                         "d": [UP, UP, DOWN], "e": [NONE, NONE, NONE], "f": [RIGHT, RIGHT, RIGHT]})
    assert mined.move_axes == {"a": "move left/right", "b": "move left/right", "c": "move up/down",
                               "d": "move up/down", "e": "", "f": ""}  # f: a move among two primary changes
    table = mined.pass_rates()
    assert list(table.index) == ["color", "hybrid", "move", "move left/right", "move up/down", "all"]
    assert table.index.name == "edit_type" and table["pairs"].tolist() == [1, 1, 4, 2, 2, 6]
    lr, ud = table.loc["move left/right"], table.loc["move up/down"]
    assert (lr["greedy_p0"], lr["pass@1_p0"], lr["pass@K_p0"]) == (0.5, 0.25, 0.5)  # a, b: samples 1/2, 0/2
    assert (ud["greedy_p0"], ud["pass@1_p0"], ud["pass@K_p0"]) == (0.5, 0.75, 1.0)  # c, d: samples 2/2, 1/2
    assert table.loc["move", "pass@1_p0"] == pytest.approx(0.5) and table.loc["all", "pairs"] == 6
    notes = mining.headroom_notes(table)
    assert any(n.startswith("move left/right: pass@K 0.50 vs pass@1 0.25") for n in notes)
    assert any(n.startswith("move up/down: pass@K 1.00 vs pass@1 0.75") for n in notes)


def test_an_axis_without_pairs_gets_no_row():
    table = mining.mine({"id": ["a", "b"], "edit_type": ["move", "color"],
                         "changes": [MOVE_LEFT, [make_change("color", "blue ball", "color", "red", "blue")]]},
                        {"a": [WRONG, RIGHT], "b": [NONE, NONE]}).pass_rates()
    assert list(table.index) == ["color", "move", "move left/right", "all"]  # no up/down row
    assert table.loc["move left/right"].equals(table.loc["move"])
    no_moves = mining.mine({"id": ["x"], "edit_type": ["color"], "changes": [[make_change("color", "blue ball")]]},
                           {"x": [NONE, NONE]}).pass_rates()
    assert list(no_moves.index) == ["color", "all"]


def test_the_move_axis_is_read_from_the_one_primary_change():
    side = make_change("tone", "image", "brightness", primary=False)
    assert mining.move_axis(MOVE_LEFT + [side]) == "move left/right"  # a secondary change does not count
    assert mining.move_axis(MOVE_UP) == "move up/down"
    assert mining.move_axis([make_change("add", "red star", direction="left")]) == ""  # not a move
    assert mining.move_axis(MOVE_LEFT + MOVE_UP) == ""
    assert mining.move_axis([]) == ""


def test_candidates_must_come_in_equal_numbers():
    with pytest.raises(ValueError, match="same number of candidates"):
        _mined({"a": [RIGHT], "b": [RIGHT, WRONG]})


@pytest.fixture(scope="module")
def smoke_model(tmp_path_factory):
    from editcaption.models import build_tiny_model

    return str(build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0))


def test_sampling_is_seeded_batched_and_cached(smoke_model, tmp_path):
    pairs = generate_pairs(3, seed=2, progress=False)
    kwargs = {"k": 3, "temperature": 1.0, "top_p": 1.0, "batch_size": 4, "max_new_tokens": 6}
    first, stats = mining.sample_candidates(pairs, smoke_model, seed=5, cache_dir=tmp_path / "a", progress=False, **kwargs)
    again, _ = mining.sample_candidates(pairs, smoke_model, seed=5, cache_dir=tmp_path / "b", progress=False, **kwargs)
    other, _ = mining.sample_candidates(pairs, smoke_model, seed=6, progress=False, **kwargs)
    assert first == again and first != other and all(len(v) == 4 for v in first.values())
    assert stats["samples"]["n"] == 9 and stats["greedy"]["n"] == 3
    assert {k: v[0] for k, v in first.items()} == {k: v[0] for k, v in other.items()}  # greedy is greedy
    cached, stats = mining.sample_candidates(pairs, smoke_model, seed=5, cache_dir=tmp_path / "a", progress=False, **kwargs)
    assert cached == first and stats["samples"]["n_cached"] == 9
    with pytest.raises(ValueError, match="temperature > 0"):
        mining.sample_candidates(pairs, smoke_model, seed=5, **{**kwargs, "temperature": 0.0})
