"""Figures of the automatic and human evaluations (notebooks 05 and 06): score bars with CIs, per-category scores,
judge agreement, the human labels' shares and the annotators' agreement."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from editcaption.data.loaders import BM_BENCH_EDIT_TYPES
from editcaption.eval import automatic, stats
from editcaption.eval.human import METRICS as HUMAN_METRICS
from editcaption.records import CATEGORIES
from editcaption.reporting.figures import finish_figure

GROUP_ORDER = (*CATEGORIES, *BM_BENCH_EDIT_TYPES)  # known groups in this order, others after them alphabetically


def _error_bars(values, lows, highs) -> np.ndarray:
    """Asymmetric error bars (2 x n) from CI bounds; 0 where a bound is missing."""
    values = np.asarray(values, dtype=float)
    lows = np.where(pd.isna(lows), values, np.asarray(lows, dtype=float))
    highs = np.where(pd.isna(highs), values, np.asarray(highs, dtype=float))
    return np.vstack([values - lows, highs - values])


def plot_score_bars(long: pd.DataFrame, *, metric: str = "S", save: str | Path | None = None):
    """One panel per benchmark and judge: a bar per model with its 95 % CI (long rows of records.LONG_COLUMNS)."""
    rows = long[long["metric"] == metric]
    panels = list(dict.fromkeys(zip(rows["benchmark"], rows["judge"])))
    fig, axes = plt.subplots(1, max(len(panels), 1), figsize=(4.2 * max(len(panels), 1), 3.4), squeeze=False)
    for ax, (bench, judge) in zip(axes[0], panels):
        part = rows[(rows["benchmark"] == bench) & (rows["judge"] == judge)]
        x = np.arange(len(part))
        ax.bar(x, part["value"].astype(float), yerr=_error_bars(part["value"], part["low"], part["high"]),
               capsize=3, color="#4C72B0")
        ax.set_xticks(x, part["model"], rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 5)
        ax.set_title(f"{bench} ({judge})", fontsize=9)
        ax.set_ylabel(f"{metric} (0-5)")
    if not panels:
        axes[0, 0].text(0.5, 0.5, "nothing scored", ha="center", va="center")
        axes[0, 0].axis("off")
    return finish_figure(fig, save)


def plot_group_scores(scores: pd.DataFrame, group: str, *, labels: dict[str, str] | None = None, title: str = "",
                      seed: int = 0, n_boot: int = 1000, save: str | Path | None = None):
    """Mean S per group (edit category, ByteMorph edit type) and source, with 95 % bootstrap CIs; `scores`
    holds one benchmark and one judge (columns source, composite, ok and `group`)."""
    ok = scores[scores["ok"].astype(bool) & scores["composite"].notna()]
    groups = sorted((str(g) for g in ok[group].unique()),
                    key=lambda g: (GROUP_ORDER.index(g) if g in GROUP_ORDER else len(GROUP_ORDER), g))
    sources = list(dict.fromkeys(ok["source"]))
    width = 0.8 / max(len(sources), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.3 * len(groups) * max(len(sources), 1) * 0.5 + 2), 3.4))
    for k, source in enumerate(sources):
        means, lows, highs = [], [], []
        for g in groups:
            values = ok[(ok["source"] == source) & (ok[group].astype(str) == g)]["composite"]
            mean, low, high = stats.bootstrap_ci(values, n_boot=n_boot, seed=seed) if len(values) else (np.nan,) * 3
            means.append(mean)
            lows.append(low)
            highs.append(high)
        x = np.arange(len(groups)) + (k - (len(sources) - 1) / 2) * width
        ax.bar(x, means, width, yerr=_error_bars(means, lows, highs), capsize=2,
               label=(labels or {}).get(source, source))
    ax.set_xticks(np.arange(len(groups)), [g or "(none)" for g in groups], rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 5)
    ax.set_ylabel("S (0-5)")
    ax.set_title(title, fontsize=9)
    if sources:
        ax.legend(fontsize=7, ncol=min(len(sources), 3))
    return finish_figure(fig, save)


def plot_judge_scatter(scores: pd.DataFrame, judge_a: str, judge_b: str, *, title: str = "",
                       save: str | Path | None = None):
    """S of one judge against another on the (source, item) both scored, with the diagonal."""
    a = scores[(scores["judge"] == judge_a) & scores["ok"].astype(bool)]
    b = scores[(scores["judge"] == judge_b) & scores["ok"].astype(bool)]
    both = a.merge(b, on=["source", "id"], suffixes=("_a", "_b"))
    fig, ax = plt.subplots(figsize=(3.8, 3.6))
    ax.scatter(both["composite_a"], both["composite_b"], s=12, alpha=0.6)
    ax.plot([0, 5], [0, 5], color="#999999", lw=1, ls="--")
    ax.set_xlim(0, 5.1)
    ax.set_ylim(0, 5.1)
    ax.set_xlabel(f"S, {judge_a}")
    ax.set_ylabel(f"S, {judge_b}")
    ax.set_title(title or f"n={len(both)}", fontsize=9)
    return finish_figure(fig, save)


def plot_category_scores(scores, stage_dir: str | Path, *, seed: int) -> list[str]:
    """S by category for every benchmark × judge that has categories (GROUP_COLUMN); returns the PNG names."""
    written = []
    for (name, judge), part in scores.groupby(["benchmark", "judge"], sort=False):
        group = automatic.GROUP_COLUMN.get(name)
        if group:
            path = Path(stage_dir) / f"by_{group}_{name}_{automatic.file_stem(judge)}.png"
            plot_group_scores(part, group, labels=automatic.SOURCE_LABELS, title=f"{name}: S by {group} [{judge}]",
                                           seed=seed, save=path)
            written.append(path.name)
    return written


LABEL_COLORS = {"Correct": "#55A868", "P0": "#C44E52", "P1": "#DD8452", "P2": "#CCB974"}


def plot_label_rates(rows: pd.DataFrame, *, save: str | Path | None = None):
    """Stacked horizontal bars: per model the Correct / P0 / P1 / P2 shares (percent), with each value written in."""
    table = rows.pivot_table(index="model", columns="metric", values="value", sort=False)
    table = table.reindex(columns=list(HUMAN_METRICS.values()))
    fig, ax = plt.subplots(figsize=(8, 0.6 * len(table) + 1.4))
    left = np.zeros(len(table))
    for metric in table.columns:
        values = table[metric].fillna(0).to_numpy()
        ax.barh(table.index, values, left=left, color=LABEL_COLORS[metric], label=metric)
        for y, (x, v) in enumerate(zip(left, values)):
            if v >= 6:
                ax.text(x + v / 2, y, f"{v:.0f}", ha="center", va="center", fontsize=8)
        left += values
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xlabel("share of instructions (%)")
    ax.legend(ncol=4, loc="lower center", bbox_to_anchor=(0.5, 1.0), frameon=False)
    return finish_figure(fig, save)


def plot_agreement(matrix: pd.DataFrame, *, title: str = "", save: str | Path | None = None):
    """Heat map of pairwise Cohen's kappa between annotators."""
    n = len(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * n + 2.5, 1.0 * n + 1.5))
    image = ax.imshow(matrix.to_numpy(dtype=float), vmin=-1, vmax=1, cmap="RdYlGn")
    ax.set_xticks(range(n), matrix.columns, rotation=30, ha="right", fontsize=8)
    ax.set_yticks(range(n), matrix.index, fontsize=8)
    for i in range(n):
        for j in range(n):
            value = matrix.iat[i, j]
            ax.text(j, i, "–" if not np.isfinite(value) else f"{value:.2f}", ha="center", va="center", fontsize=9)
    fig.colorbar(image, ax=ax, label="Cohen's kappa")
    if title:
        ax.set_title(title, fontsize=10)
    return finish_figure(fig, save)


def plot_annotator_agreement(matrix: pd.DataFrame, agreement: dict, *, save: str | Path | None = None):
    """`plot_agreement` of the pairwise kappas, titled with the overall kappa; nothing with a single annotator."""
    if len(matrix) <= 1:
        return None
    return plot_agreement(matrix, title=f"all annotators: {agreement['method']} kappa {agreement['kappa']:.2f}",
                          save=save)


def plot_judge_agreement(scores: pd.DataFrame, agreement: list[dict], stage_dir: str | Path) -> list[Path]:
    """`plot_judge_scatter` for every (benchmark, judge pair) of `automatic.judge_agreement`, one file each."""
    written = []
    for row in agreement:
        path = Path(stage_dir) / (f"agreement_{row['benchmark']}_{automatic.file_stem(row['judge_a'])}"
                                  f"_vs_{automatic.file_stem(row['judge_b'])}.png")
        plot_judge_scatter(scores[scores["benchmark"] == row["benchmark"]], row["judge_a"], row["judge_b"],
                           title=f"{row['benchmark']}: n={row['n']}", save=path)
        written.append(path)
    return written
