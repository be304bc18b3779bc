"""Figures of the preference stage: where mining finds headroom (notebook 03), how the chosen answers differ
from the rejected ones, what DPO does to the log-probabilities during training, how the hardness term spreads
(notebook 04), and the per-mode error rates on the targeted subsets (notebooks 04 and 05)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from editcaption.reporting.figures import MODE_COLORS, finish_figure


def plot_pass_rates(table: pd.DataFrame, *, criterion: str = "p0", save: str | Path | None = None):
    """Per row of `Mining.pass_rates` (each edit type and move axis): the greedy pass rate, pass@1 and pass@K of
    the sampled candidates, on `criterion` "p0" (no P0 error) or "correct" (no error). The gap between pass@K
    and pass@1 is what a preference stage can hope to close."""
    rows = table.drop(index="all", errors="ignore")
    columns = [(f"greedy_{criterion}", "greedy"), (f"pass@1_{criterion}", "pass@1"), (f"pass@K_{criterion}", "pass@K")]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.5, 0.9 * len(rows) + 2), 3.6))
    for k, (column, label) in enumerate(columns):
        ax.bar(x + (k - 1) * 0.27, rows[column], 0.27, label=label)
    ax.set_xticks(x, [f"{t}\n(n={n})" for t, n in zip(rows.index, rows["pairs"])], fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("share of pairs" if criterion == "p0" else "share of pairs, fully correct")
    ax.set_title("pass = no P0 error" if criterion == "p0" else "pass = no error at all", fontsize=9)
    ax.legend(fontsize=8, ncol=3)
    return finish_figure(fig, save)


def plot_edit_distances(provenance: pd.DataFrame, *, save: str | Path | None = None):
    """Histogram of the token edit distance between each chosen and rejected answer, stacked by failure mode,
    and the number of chosen answers from each source."""
    fig, (ax_h, ax_s) = plt.subplots(1, 2, figsize=(11, 3.5), gridspec_kw={"width_ratios": [3, 1.2]})
    top = int(provenance["edit_distance"].max()) if len(provenance) else 1
    bins = np.arange(0, top + 2) - 0.5
    stacks = [provenance.loc[provenance["error_type"] == m, "edit_distance"] for m in MODE_COLORS]
    ax_h.hist(stacks, bins=bins, stacked=True, color=list(MODE_COLORS.values()), label=list(MODE_COLORS))
    ax_h.set_xlabel("token edit distance, chosen vs rejected")
    ax_h.set_ylabel("preference pairs")
    ax_h.legend(fontsize=8)
    sources = provenance["chosen_source"].value_counts()
    ax_s.bar(sources.index, sources.values, color="#888888")
    ax_s.set_ylabel("chosen answers")
    ax_s.tick_params(axis="x", labelsize=8)
    return finish_figure(fig, save)


CURVES = (("rewards/accuracies", "reward accuracy"), ("rewards/margins", "reward margin β·Δ"),
          ("logps/chosen", "log p(chosen)"), ("logps/rejected", "log p(rejected)"),
          ("hae/dpo_loss", "DPO part of the loss (eq. 2)"), ("hae/chosen_nll", "chosen NLL per token"))


def plot_dpo_curves(histories: dict[str, list[dict]], *, save: str | Path | None = None):
    """Per run, against the optimizer step: TRL's reward accuracy and reward margin, the policy's summed
    log-probability of the chosen and of the rejected answers, and the two parts of the loss logged apart (the
    DPO part with the run's margin, the chosen answer's NLL), whatever the run trained on, so the controls'
    curves compare with the variants'. A chosen log-probability that falls with the rejected one is DPO moving
    mass away from both, not towards the chosen answer."""
    fig, axes = plt.subplots(2, 3, figsize=(13, 6.4))
    axes = axes.ravel()
    for name, history in histories.items():
        for ax, (key, _) in zip(axes, CURVES):
            points = [(e["step"], float(e[key])) for e in history if key in e]
            if points:
                ax.plot(*zip(*points), "-", linewidth=1.2, label=name)
    for ax, (_, label) in zip(axes, CURVES):
        ax.set_xlabel("step")
        ax.set_title(label, fontsize=9)
    axes[0].legend(fontsize=7)
    return finish_figure(fig, save)


def plot_hardness(margins: pd.DataFrame, *, save: str | Path | None = None):
    """The hardness term over the preference pairs: its distribution per failure mode, and the pairs ranked by
    it, with the reference model's per-token log-likelihood gap ℓ_ref(y_r) − ℓ_ref(y_w) it is a sigmoid of."""
    fig, (ax_d, ax_r) = plt.subplots(1, 2, figsize=(11, 3.5))
    for mode, color in MODE_COLORS.items():
        values = margins.loc[margins["error_type"] == mode, "h_term"]
        if len(values):
            ax_d.hist(values, bins=np.linspace(0, 1, 21), alpha=0.55, color=color, label=f"{mode} (n={len(values)})")
    ax_d.set_xlabel("hardness term σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ)")
    ax_d.set_ylabel("preference pairs")
    ax_d.legend(fontsize=8)
    ranked = margins.sort_values("h_term").reset_index(drop=True)
    ax_r.scatter(ranked.index, ranked["h_term"], s=6, c=[MODE_COLORS.get(m, "gray") for m in ranked["error_type"]])
    gap = ax_r.twinx()
    gap.plot(ranked.index, ranked["ref_logp_rejected"] - ranked["ref_logp_chosen"], color="gray", linewidth=0.6)
    gap.set_ylabel("ℓ_ref(y_r) − ℓ_ref(y_w)", fontsize=8)
    ax_r.set_xlabel("pairs ranked by hardness")
    ax_r.set_ylabel("hardness term")
    return finish_figure(fig, save)


def plot_targeted_rates(rates: pd.DataFrame, *, measure: str = "p0", save: str | Path | None = None):
    """Error rate with its 95 % interval per model on each targeted subset (`targeted.error_rates`)."""
    subset_rates = rates[rates["measure"] == measure]
    subsets = list(dict.fromkeys(subset_rates["subset"]))
    models = list(dict.fromkeys(subset_rates["model"]))
    fig, axes = plt.subplots(1, len(subsets), figsize=(3.6 * len(subsets) + 1, 3.4), sharey=True, squeeze=False)
    for ax, subset in zip(axes[0], subsets):
        part = subset_rates[subset_rates["subset"] == subset].set_index("model").reindex(models)
        errors = np.vstack([part["rate"] - part["low"], part["high"] - part["rate"]])
        ax.bar(range(len(models)), part["rate"], yerr=errors, capsize=3, color=MODE_COLORS.get(subset, "gray"))
        ax.set_xticks(range(len(models)), models, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"{subset} subset (n={int(part['n'].max())})", fontsize=9)
    axes[0][0].set_ylabel("P0 error rate" if measure == "p0" else "error rate of the subset's mode")
    return finish_figure(fig, save)


def plot_sweep(sweep: pd.DataFrame, *, save: str | Path | None = None):
    """The budget sweep: pooled P0 error rate on the validation subsets (with its interval) per setting."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    errors = np.vstack([sweep["p0"] - sweep["low"], sweep["high"] - sweep["p0"]])
    ax.bar(range(len(sweep)), sweep["p0"], yerr=errors, capsize=3, color=["#4C72B0" if c else "#999999"
                                                                          for c in sweep["chosen"]])
    ax.set_xticks(range(len(sweep)), sweep["setting"], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("P0 error rate, validation subsets")
    return finish_figure(fig, save)


def plot_length_deltas(deltas: pd.DataFrame, kept: list[str], *, save: str | Path | None = None):
    """Chosen − rejected, in edit clauses and in words, per failure mode: every corrected pair (light) and the
    pairs the length balance kept (dark). A set whose bars lean right teaches "write more"."""
    modes = sorted(deltas["error_type"].unique())
    fig, axes = plt.subplots(2, max(1, len(modes)), figsize=(3.2 * max(1, len(modes)), 4.8), squeeze=False)
    kept_rows = deltas[deltas["id"].isin(set(kept))]
    for col, mode in enumerate(modes):
        for row, (column, unit) in enumerate((("d_clauses", "clauses"), ("d_words", "words"))):
            ax = axes[row][col]
            every = deltas.loc[deltas["error_type"] == mode, column]
            left = kept_rows.loc[kept_rows["error_type"] == mode, column]
            bins = np.arange(min(every.min(), -1) - 0.5, max(every.max(), 1) + 1.5)
            ax.hist(every, bins=bins, color=MODE_COLORS.get(mode, "gray"), alpha=0.35, label=f"all ({len(every)})")
            ax.hist(left, bins=bins, color=MODE_COLORS.get(mode, "gray"), label=f"kept ({len(left)})")
            ax.axvline(0, color="black", lw=0.8)
            ax.set_xlabel(f"chosen − rejected, {unit}", fontsize=8)
            ax.set_title(f"{mode}: mean {every.mean():+.2f} → {left.mean() if len(left) else float('nan'):+.2f}",
                         fontsize=8)
            ax.legend(fontsize=7)
    return finish_figure(fig, save)
