"""The paper's table 2 on the targeted subsets (issue 26): per model and subset, the share of correct answers
and of P0, P1 and P2 answers by the paper's hierarchy (a pair with any P0 error is P0; with a P1 error and no
P0, P1; with a P2 error only, P2: the four shares sum to 1), the share of multi-clause answers and of answers
with an unsupported clause, and the words per answer, each with its 95 % interval; table 4 the same per
variant over its training seeds (two-level bootstrap: seeds, then pairs); and the paired comparisons of two
models on each measure.

The per-pair measures are `targeted`'s (`measure_values`); `all` pools every subset's pairs.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from editcaption.eval import stats, targeted

RATE_MEASURES = ("correct", "p0", "p1", "p2", "multi_clause", "unsupported")  # shares of pairs
MEASURES = (*RATE_MEASURES, targeted.WORDS)
LABELS = {"correct": "Correct", "p0": "P0", "p1": "P1", "p2": "P2", "multi_clause": "Multi-clause",
          "unsupported": "Unsupported", "words": "Words"}
LONG_COLUMNS = ["model", "subset", "measure", "n", "value", "low", "high"]
SEEDED_COLUMNS = ["variant", "subset", "measure", "seeds", "n_per_seed", "value", "low", "high", "per_seed"]


def _with_all(scores: Mapping[str, Mapping[str, pd.DataFrame]]) -> dict[str, dict[str, pd.DataFrame]]:
    """`scores` with an `all` subset per model where it has none (`targeted.pooled_scores`)."""
    return {model: dict(by_mode) if "all" in by_mode else {**by_mode, "all": targeted.pooled_scores(by_mode)}
            for model, by_mode in scores.items()}


def _wide(long: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per `keys`, and per measure three columns: "<Label>", "<Label> low", "<Label> high"."""
    rows = []
    for key, group in long.groupby(list(keys), sort=False):
        row = dict(zip(keys, key if isinstance(key, tuple) else (key,)))
        for r in group.itertuples():
            label = LABELS[r.measure]
            row.update({label: r.value, f"{label} low": r.low, f"{label} high": r.high})
        rows.append(row)
    return pd.DataFrame(rows)


def table2_long(scores: Mapping[str, Mapping[str, pd.DataFrame]], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """One row per (model, subset, measure of MEASURES), `all` included: `n` pairs, the share (or the mean
    words per answer) `value` and its 95 % BCa bootstrap interval `low`, `high`. `scores`: model -> mode ->
    per-pair scores (`targeted.score_models`, with or without `targeted.with_pooled`)."""
    rows = []
    for model, by_mode in _with_all(scores).items():
        for mode, frame in by_mode.items():
            for measure in MEASURES:
                value, low, high = stats.bootstrap_ci(targeted.measure_values(frame, mode, measure), n_boot=n_boot,
                                                      seed=seed)
                rows.append({"model": model, "subset": mode, "measure": measure, "n": len(frame),
                             "value": value, "low": low, "high": high})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def table2(scores: Mapping[str, Mapping[str, pd.DataFrame]], *, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table 2: one row per (model, subset), `all` included, with `n` and per measure its value and 95 %
    interval: Correct, P0, P1, P2 (shares that sum to 1), Multi-clause, Unsupported (shares), Words (mean
    words per answer), each followed by "<name> low" and "<name> high"."""
    return _wide(table2_long(scores, n_boot=n_boot, seed=seed), ["model", "subset", "n"])


def table4_long(scores: Mapping[str, Mapping[str, pd.DataFrame]], runs: Mapping[str, tuple[str, int]], *,
                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table 2's measures per variant over its seeds (`targeted.seeded_rates`: the mean over the seeds' runs,
    a 95 % interval over seeds and pairs, and the per-seed values): one row per (variant, subset, measure),
    `all` included. `runs`: run label -> (variant, seed), as `experiment.run_seeds` gives them."""
    scores = _with_all(scores)
    parts = [targeted.seeded_rates(scores, runs, measure=measure, n_boot=n_boot, seed=seed) for measure in MEASURES]
    parts = [part for part in parts if not part.empty]
    if not parts:
        return pd.DataFrame(columns=SEEDED_COLUMNS)
    long = pd.concat(parts, ignore_index=True).rename(columns={"rate": "value"})
    rank = {column: {v: k for k, v in enumerate(dict.fromkeys(long[column]))} for column in ("variant", "subset")}
    rank["measure"] = {m: k for k, m in enumerate(MEASURES)}
    long = long.sort_values(["variant", "subset", "measure"], key=lambda col: col.map(rank[col.name]), kind="stable")
    return long[SEEDED_COLUMNS].reset_index(drop=True)


def table4(scores: Mapping[str, Mapping[str, pd.DataFrame]], runs: Mapping[str, tuple[str, int]], *,
           n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table 4 over seeds with table 2's columns: one row per (variant, subset) with `seeds`, `n_per_seed` and
    per measure its mean over the seeds and 95 % interval over seeds and pairs ("<name> low", "<name> high")."""
    return _wide(table4_long(scores, runs, n_boot=n_boot, seed=seed), ["variant", "subset", "seeds", "n_per_seed"])


def comparisons(scores: Mapping[str, Mapping[str, pd.DataFrame]], pairs: Sequence[tuple[str, str]], *,
                n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table 2's measures compared pair by pair for each (a, b) in `pairs` on every subset, `all` included:
    the shares as `targeted.paired_comparisons` (McNemar exact, paired bootstrap interval of b - a, smallest
    detectable difference); words per answer by `stats.paired_test` (mean difference b - a, its paired
    interval, a sign-flip permutation p-value; `rate_a`, `rate_b` are the mean words)."""
    scores = _with_all(scores)
    rates = targeted.paired_comparisons(scores, pairs, seed=seed, measures=RATE_MEASURES)
    rows = []
    for a, b in pairs:
        for mode, frame_a in scores[a].items():
            frame_b = scores[b][mode]
            words_a = targeted.measure_values(frame_a, mode, targeted.WORDS)
            words_b = targeted.measure_values(frame_b, mode, targeted.WORDS)
            test = stats.paired_test(words_a, words_b, n_boot=n_boot, seed=seed)
            rows.append({"a": a, "b": b, "subset": mode, "measure": targeted.WORDS, "n": len(frame_a),
                         "rate_a": float(words_a.mean()), "rate_b": float(words_b.mean()), **test,
                         "only_a": np.nan, "only_b": np.nan, "min_detectable_diff": np.nan})
    if not rows:
        return rates
    return pd.concat([rates, pd.DataFrame(rows)[list(rates.columns)]], ignore_index=True)


def cells(table: pd.DataFrame, *, digits: int = 3) -> pd.DataFrame:
    """`table2` / `table4` for reading: each measure as one "value [low, high]" cell (words with one decimal)."""
    keys = [c for c in table.columns if c not in {f"{label}{tail}" for label in LABELS.values()
                                                   for tail in ("", " low", " high")}]
    out = table[keys].copy()
    for measure, label in LABELS.items():
        if label in table:
            d = 1 if measure == targeted.WORDS else digits
            out[label] = [f"{v:.{d}f} [{lo:.{d}f}, {hi:.{d}f}]"
                          for v, lo, hi in zip(table[label], table[f"{label} low"], table[f"{label} high"])]
    return out
