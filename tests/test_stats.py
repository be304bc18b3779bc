"""eval/stats.py: scipy's BCa bootstrap and permutation test, statsmodels' McNemar, against the hand-written
percentile bootstrap they replaced (on fixed data, within the bootstrap's own noise) and exact small cases."""
import numpy as np
import pytest

from editcaption.eval import stats


def percentile_bootstrap(values, n_boot=2000, seed=0):
    """The project's former interval: percentile bootstrap of the mean (kept here as the reference)."""
    x = np.asarray(values, dtype=float)
    means = x[np.random.default_rng(seed).integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    return tuple(np.quantile(means, [0.025, 0.975]))


FIXED = {  # what the project's tables hold: error flags, 0-5 scores, a skewed measure
    "p0 flags, n=300, rate 0.3": (np.random.default_rng(1).random(300) < 0.3).astype(float),
    "scores 0-5, n=200": np.clip(np.random.default_rng(2).normal(3.4, 0.8, 200), 0, 5),
    "skewed, n=100": np.random.default_rng(3).exponential(1.0, 100),
}


@pytest.mark.parametrize("name", FIXED)
def test_bca_intervals_agree_with_the_former_percentile_ones_within_the_bootstraps_noise(name):
    x = FIXED[name]
    mean, low, high = stats.bootstrap_ci(x)
    old_low, old_high = percentile_bootstrap(x)
    se = x.std(ddof=1) / np.sqrt(x.size)
    # 2000 resamples put a 2.5 % quantile within about 0.1 se of its limit; BCa moves a skewed interval
    # by up to about 0.1 se more (the exponential's skewness, 2, over sqrt(n)): 0.25 se covers both
    assert abs(low - old_low) < 0.25 * se and abs(high - old_high) < 0.25 * se
    assert low < mean < high
    assert stats.bootstrap_ci(x, seed=1) != (mean, low, high)  # the seed is used
    assert stats.bootstrap_ci(x) == (mean, low, high)  # and fixes the result


def test_bca_shifts_a_skewed_interval_the_way_percentile_does_not():
    x = FIXED["skewed, n=100"]
    mean, low, high = stats.bootstrap_ci(x, n_boot=9999)
    old_low, old_high = percentile_bootstrap(x, n_boot=9999)
    assert high - mean > mean - low  # a right-skewed mean: the upper arm is longer
    assert high > old_high  # BCa's acceleration stretches it further than the percentile interval


def test_degenerate_and_bad_samples():
    assert stats.bootstrap_ci([0.0] * 50) == (0.0, 0.0, 0.0)
    assert stats.bootstrap_ci([2.5]) == (2.5, 2.5, 2.5)
    with pytest.raises(ValueError, match="non-empty"):
        stats.bootstrap_ci([])
    with pytest.raises(ValueError, match="NaN or infinite"):
        stats.bootstrap_ci([1.0, float("nan")])


def test_the_paired_permutation_test_is_exact_on_small_samples_and_valid_under_the_null():
    # five positive differences: of the 2^5 sign patterns, 2 are as extreme (all + or all -)
    assert stats.paired_test([0, 0, 0, 0, 0], [1, 2, 3, 4, 5])["p_value"] == pytest.approx(2 / 32)
    assert stats.paired_test([1, 2, 3], [1, 2, 3])["p_value"] == 1.0
    rng = np.random.default_rng(0)
    p = [stats.paired_test(rng.normal(0, 1, 40), rng.normal(0, 1, 40), n_boot=200, n_permutations=999, seed=k)["p_value"]
         for k in range(200)]
    assert 0.01 <= np.mean(np.asarray(p) < 0.05) <= 0.10  # rejects a true null about 5 % of the time
    shifted = stats.paired_test(rng.normal(0, 1, 100), rng.normal(0.6, 1, 100))
    assert shifted["p_value"] < 0.01 and shifted["low"] > 0 and "permutation" in shifted["test"]


def test_paired_rates_use_mcnemar_and_a_bca_interval():
    a = np.zeros(300, dtype=bool)
    a[:60] = True
    b = a.copy()
    b[:20] = False  # 20 items fixed, none broken
    result = stats.paired_rates(a, b)
    assert (result["only_a"], result["only_b"]) == (20, 0)
    assert result["p_value"] == pytest.approx(2 * 0.5**20) and result["test"].startswith("McNemar")
    assert result["diff"] == pytest.approx(-20 / 300) and result["low"] < result["diff"] < result["high"] < 0


def test_spearman_is_scipys_with_average_ranks():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    assert np.isnan(stats.spearman([1, 1], [1, 2])) and np.isnan(stats.spearman([3], [4]))
    with pytest.raises(ValueError, match="equal lengths"):
        stats.spearman([1, 2], [1])


def test_two_level_interval_resamples_seeds_then_items():
    rng = np.random.default_rng(4)
    groups = [(rng.random(300) < p).astype(float) for p in (0.2, 0.3, 0.4)]
    rate, low, high = stats.two_level_ci(groups)
    assert rate == pytest.approx(np.mean([g.mean() for g in groups]))
    _, one_low, one_high = stats.bootstrap_ci(np.concatenate(groups))
    assert high - low > 2 * (one_high - one_low)  # the spread between seeds counts, not only the items
    same = [groups[0]] * 3
    _, s_low, s_high = stats.two_level_ci(same)
    assert s_high - s_low < high - low
