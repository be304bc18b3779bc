"""Scoring instruction lists and summarising them; bootstrap intervals behave."""
import numpy as np
import pytest

from editcaption.world.synthetic import generate_pairs
from editcaption.eval import stats, summary


@pytest.fixture(scope="module")
def pairs():
    return generate_pairs(64, seed=3, size=96, progress=False)


def test_reference_instructions_summarise_to_full_marks(pairs):
    scores = summary.score_instructions(pairs, pairs["instruction"])
    result = summary.summarize(scores)
    assert result["S"] == pytest.approx(5.0) and result["p0_rate"] == 0.0
    assert set(result["op_accuracy"]) == set(pairs["edit_type"]) and min(result["op_accuracy"].values()) == 1.0


def test_an_empty_answer_is_a_p0_omission_and_lowers_the_score(pairs):
    scores = summary.score_instructions(pairs, ["Make it look better."] * len(pairs))
    result = summary.summarize(scores)
    assert result["S"] < 3.0 and result["p0_rate"] > 0.9 and result["correct_rate"] < 0.1
    table = summary.comparison_table({"ref": summary.summarize(summary.score_instructions(pairs, pairs["instruction"])),
                                      "bad": result})
    assert list(table.index) == ["ref", "bad"] and table.loc["ref", "S"] > table.loc["bad", "S"]


def test_length_mismatch_is_refused(pairs):
    with pytest.raises(ValueError, match="3 instructions for 64 pairs"):
        summary.score_instructions(pairs, ["a", "b", "c"])


def test_bootstrap_interval_contains_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(3, 1, 50), rng.normal(3, 1, 5000)
    m, lo, hi = stats.bootstrap_ci(small)
    assert lo < m < hi
    _, lo2, hi2 = stats.bootstrap_ci(large)
    assert hi2 - lo2 < (hi - lo) / 5


def test_paired_test_detects_a_shift_and_not_noise():
    rng = np.random.default_rng(1)
    a = rng.normal(3, 1, 400)
    shifted = stats.paired_test(a, a + 0.5)
    assert shifted["diff"] == pytest.approx(0.5) and shifted["low"] > 0 and shifted["p_value"] < 0.01
    noise = stats.paired_test(a, a + rng.normal(0, 0.01, 400))
    assert noise["low"] < 0 < noise["high"]
    with pytest.raises(ValueError):
        stats.paired_test([1, 2], [1])


def test_direction_swaps_counts_opposite_words_per_axis():
    from editcaption.eval.summary import direction_swaps

    move = lambda d: [{"op": "move", "object": "red star", "attribute": "", "before": "", "after": "", "direction": d,
                       "primary": True}]
    pairs = {"changes": [move("left"), move("left"), move("right"), move("up"), move("up")]}
    texts = ["Move the red star to the right.", "Move the red star left.", "Shift it somewhere.",
             "Move the red star up.", "Move the red star down, not up."]
    swaps = direction_swaps(pairs, texts)
    assert swaps["left_right"] == {"n": 3, "stated": 2, "swapped": 1, "swap_rate": 0.5}
    assert swaps["up_down"] == {"n": 2, "stated": 1, "swapped": 0, "swap_rate": 0.0}
    with pytest.raises(ValueError, match="2 instructions for 5 pairs"):
        direction_swaps(pairs, texts[:2])
