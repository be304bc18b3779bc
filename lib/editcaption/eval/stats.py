"""Bootstrap confidence intervals and paired bootstrap tests for per-item scores."""
from __future__ import annotations

import numpy as np


def bootstrap_ci(values, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean and its percentile bootstrap (1 - alpha) interval."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("bootstrap_ci needs at least one value")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(x.mean()), float(low), float(high)


def paired_bootstrap(a, b, *, n_boot: int = 2000, alpha: float = 0.05, seed: int = 0) -> dict:
    """Mean difference b - a over the same items, its bootstrap interval and a two-sided p-value
    (share of resampled differences on the other side of zero, doubled)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty score lists (got {a.shape} and {b.shape})")
    diff = b - a
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    p = 2 * min((means <= 0).mean(), (means >= 0).mean())
    return {"diff": float(diff.mean()), "low": float(low), "high": float(high), "p_value": float(min(p, 1.0))}


def paired_rates(fail_a, fail_b, *, n_boot: int = 2000, alpha: float = 0.05, power: float = 0.8,
                 seed: int = 0) -> dict:
    """Two models' pass/fail outcomes on the same items (True = the item has the error): both rates, the
    difference b - a with its paired bootstrap (1 - alpha) interval, McNemar's exact test on the discordant
    items, and the smallest difference this many items can detect at `alpha` with `power` given the observed
    share of discordant items (normal approximation: (z_{1-alpha/2} + z_power) * sqrt(discordant / n))."""
    from scipy.stats import norm
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(fail_a, dtype=bool), np.asarray(fail_b, dtype=bool)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"paired_rates needs two equal, non-empty outcome lists (got {a.shape} and {b.shape})")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    interval = paired_bootstrap(a.astype(float), b.astype(float), n_boot=n_boot, alpha=alpha, seed=seed)
    table = [[int((a & b).sum()), only_a], [only_b, int((~a & ~b).sum())]]
    p_value = float(mcnemar(table, exact=True).pvalue) if only_a + only_b else 1.0
    discordant = max(only_a + only_b, 1) / a.size
    detectable = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * float(np.sqrt(discordant / a.size))
    return {"n": int(a.size), "rate_a": float(a.mean()), "rate_b": float(b.mean()), "diff": float(b.mean() - a.mean()),
            "low": interval["low"], "high": interval["high"], "only_a": only_a, "only_b": only_b,
            "p_value": p_value, "test": "McNemar exact (binomial on discordant items)",
            "min_detectable_diff": float(detectable)}
