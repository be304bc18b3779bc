"""Confidence intervals and paired tests on scipy and statsmodels, adapted to our per-item score lists.

Every interval and test of the project comes from here, so a table can name its method in one word:

- `bootstrap_ci`: mean and its BCa bootstrap interval (`scipy.stats.bootstrap`, method "BCa");
- `bootstrap_statistic`: the same for any statistic of items (a kappa), resampling item indices;
- `paired_test`: the mean difference b - a over the same items, its BCa bootstrap interval of the
  differences and the two-sided p-value of a paired sign-flip permutation test
  (`scipy.stats.permutation_test`, permutation_type "samples": exact when 2^n is small);
- `paired_rates`: two models' pass/fail outcomes on the same items, McNemar's exact test
  (`statsmodels.stats.contingency_tables.mcnemar`) and the smallest difference the items can detect;
- `spearman`: `scipy.stats.spearmanr`;
- `two_level_ci`: the one resampler written here, because scipy has no multilevel bootstrap: seeds
  with replacement, then items with replacement within each drawn seed (table 4 over seeds).

A sample whose values are all equal has a degenerate bootstrap distribution: its interval is the point
itself (what any resampling gives), instead of scipy's NaN and warning.
"""
from __future__ import annotations

import warnings
from typing import Callable, Sequence

import numpy as np
from scipy import stats as sps
from statsmodels.stats.contingency_tables import mcnemar

BOOTSTRAP_METHOD = "BCa"  # scipy.stats.bootstrap's bias-corrected and accelerated interval
PAIRED_TEST = "paired sign-flip permutation test (scipy.stats.permutation_test)"
MCNEMAR_TEST = "McNemar exact (binomial on discordant items; statsmodels)"
BATCH = 500  # resamples per vectorised call: bounds memory at BATCH x n values


def _as_sample(values, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"{name} needs a non-empty list of numbers (got shape {x.shape})")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} got {int((~np.isfinite(x)).sum())} value(s) that are NaN or infinite")
    return x


def _interval(result) -> tuple[float, float]:
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def bootstrap_ci(values, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its BCa bootstrap (1 - alpha) interval."""
    x = _as_sample(values, "bootstrap_ci")
    mean = float(x.mean())
    if x.size < 2 or np.ptp(x) <= 1e-12 * max(1.0, abs(mean)):  # equal up to rounding: no spread to resample
        return mean, mean, mean
    result = sps.bootstrap((x,), np.mean, n_resamples=n_boot, confidence_level=1 - alpha, method=BOOTSTRAP_METHOD,
                           vectorized=True, batch=BATCH, rng=np.random.default_rng(seed))
    return (mean, *_interval(result))


def bootstrap_statistic(statistic: Callable[[np.ndarray], float], n_items: int, *, n_boot: int = 2000,
                        alpha: float = 0.05, seed: int = 0) -> tuple[float, float]:
    """(low, high): the BCa bootstrap (1 - alpha) interval of `statistic(item_indices)` over `n_items` items
    resampled with replacement (e.g. a kappa of the resampled rows); NaN when the statistic is undefined on
    some resamples (a resample whose items all carry one label) or on the data."""
    if n_items < 2:
        return float("nan"), float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on NaN resamples; the NaN interval says it
        result = sps.bootstrap((np.arange(n_items),), lambda idx: statistic(idx.astype(int)), n_resamples=n_boot,
                               confidence_level=1 - alpha, method=BOOTSTRAP_METHOD, vectorized=False,
                               rng=np.random.default_rng(seed))
    return _interval(result)


def paired_test(a, b, *, n_boot: int = 2000, n_permutations: int = 9999, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean difference b - a over the same items: its BCa bootstrap (1 - alpha) interval and the two-sided
    p-value of the paired sign-flip permutation test (H0: the difference of each item is symmetric about 0)."""
    a, b = _as_sample(a, "paired_test"), _as_sample(b, "paired_test")
    if a.shape != b.shape:
        raise ValueError(f"paired_test needs two equal score lists (got {a.shape} and {b.shape})")
    diff = b - a
    mean, low, high = bootstrap_ci(diff, n_boot=n_boot, alpha=alpha, seed=seed)
    if np.ptp(diff) <= 1e-12 * max(1.0, abs(mean)) and abs(mean) <= 1e-12:
        p_value = 1.0  # no difference on any item
    else:
        result = sps.permutation_test((diff,), np.mean, permutation_type="samples", vectorized=True,
                                      n_resamples=n_permutations, alternative="two-sided", batch=BATCH,
                                      rng=np.random.default_rng(seed))
        p_value = float(result.pvalue)
    return {"diff": mean, "low": low, "high": high, "p_value": p_value, "test": PAIRED_TEST}


def paired_rates(fail_a, fail_b, *, n_boot: int = 2000, alpha: float = 0.05, power: float = 0.8,
                 seed: int = 0) -> dict:
    """Two models' pass/fail outcomes on the same items (True = the item has the error): both rates, the
    difference b - a with its BCa bootstrap (1 - alpha) interval, McNemar's exact test on the discordant
    items, and the smallest difference this many items can detect at `alpha` with `power` given the observed
    share of discordant items (normal approximation: (z_{1-alpha/2} + z_power) * sqrt(discordant / n))."""
    a, b = np.asarray(fail_a, dtype=bool), np.asarray(fail_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_rates needs two equal, non-empty outcome lists (got {a.shape} and {b.shape})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    _, low, high = bootstrap_ci(b.astype(float) - a.astype(float), n_boot=n_boot, alpha=alpha, seed=seed)
    table = [[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]]
    p_value = float(mcnemar(table, exact=True).pvalue) if only_a + only_b else 1.0
    discordant = max(only_a + only_b, 1) / a.size
    detectable = (sps.norm.ppf(1 - alpha / 2) + sps.norm.ppf(power)) * float(np.sqrt(discordant / a.size))
    return {"n": int(a.size), "rate_a": float(a.mean()), "rate_b": float(b.mean()), "diff": float(b.mean() - a.mean()),
            "low": low, "high": high, "only_a": only_a, "only_b": only_b, "p_value": p_value, "test": MCNEMAR_TEST,
            "min_detectable_diff": float(detectable)}


def spearman(a, b) -> float:
    """Spearman's rank correlation (scipy; average ranks for ties); NaN for fewer than two items or a constant
    side."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) != len(b):
        raise ValueError(f"spearman needs equal lengths, got {len(a)} and {len(b)}")
    if len(a) < 2 or np.all(a == a[0]) or np.all(b == b[0]):
        return float("nan")
    return float(sps.spearmanr(a, b).statistic)


def two_level_ci(groups: Sequence, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean of the group means, low, high) for items nested in groups (pairs within training seeds): a
    percentile interval from resampling groups with replacement, then items with replacement within each
    drawn group. Written here because scipy.stats.bootstrap resamples one level only."""
    samples = [_as_sample(g, "two_level_ci") for g in groups]
    if not samples:
        raise ValueError("two_level_ci needs at least one group")
    rng = np.random.default_rng(seed)
    draws = np.empty(n_boot)
    for k in range(n_boot):
        picked = rng.integers(0, len(samples), size=len(samples))
        draws[k] = np.mean([samples[g][rng.integers(0, samples[g].size, size=samples[g].size)].mean() for g in picked])
    low, high = np.quantile(draws, [alpha / 2, 1 - alpha / 2])
    return float(np.mean([s.mean() for s in samples])), float(low), float(high)
