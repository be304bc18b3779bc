"""Figures the notebooks show: example pairs with their ground truth, and the paper's Figure 2."""
from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

CATEGORY_COLORS = {"semantic": "#4C72B0", "stylistic": "#DD8452", "structural": "#55A868", "": "#999999"}


def plot_pair_examples(pairs, n: int = 6, *, wrap: int = 48, save: str | Path | None = None):
    """A grid of (source, target, text) rows: the instruction, the GT primary and secondary changes."""
    n = min(n, len(pairs))
    fig, axes = plt.subplots(n, 3, figsize=(11, 2.6 * n), gridspec_kw={"width_ratios": [1, 1, 1.8]}, squeeze=False)
    for i in range(n):
        row = pairs[i]
        for ax, key, title in ((axes[i, 0], "source_image", "source"), (axes[i, 1], "target_image", "target")):
            ax.imshow(row[key])
            ax.set_title(f"{title} ({row[key].width}x{row[key].height})", fontsize=8)
            ax.axis("off")
        gt = row["gt"]
        lines = [f"[{row['category'] or '?'} / {row['edit_type'] or '?'}]  id {row['id']}",
                 "instruction: " + (row["instruction"] or "(none)")]
        lines += ["primary: " + c for c in gt["primary_changes"]]
        lines += ["secondary: " + c for c in gt["secondary_changes"]]
        text = "\n".join(textwrap.fill(line, wrap, subsequent_indent="   ") for line in lines)
        axes[i, 2].text(0, 1, text, va="top", ha="left", fontsize=8, family="monospace")
        axes[i, 2].axis("off")
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig


def plot_edit_distribution(categories: list[str], edit_types: list[str], *, save: str | Path | None = None):
    """Figure 2 of the paper: share of each category (inner ring) and edit type (outer ring), plus counts."""
    by_cat = Counter(categories)
    by_type = Counter(zip(categories, edit_types))
    cats = [c for c in ("semantic", "stylistic", "structural") if by_cat[c]] + sorted(
        c for c in by_cat if c not in ("semantic", "stylistic", "structural"))
    outer = [(c, t, k) for c in cats for (cc, t), k in sorted(by_type.items()) if cc == c]
    fig, (ax_pie, ax_bar) = plt.subplots(1, 2, figsize=(13, 5.5), gridspec_kw={"width_ratios": [1, 1.2]})
    total = sum(by_cat.values())
    ax_pie.pie([by_cat[c] for c in cats], radius=0.65, colors=[CATEGORY_COLORS.get(c, "#999999") for c in cats],
               labels=[f"{c or '?'}\n{100 * by_cat[c] / total:.0f}%" for c in cats], labeldistance=0.72,
               wedgeprops={"width": 0.35, "edgecolor": "white"}, textprops={"fontsize": 8, "color": "white", "ha": "center"})
    ax_pie.pie([k for _, _, k in outer], radius=1.0, colors=[CATEGORY_COLORS.get(c, "#999999") for c, _, _ in outer],
               labels=[t for _, t, _ in outer], labeldistance=1.05, textprops={"fontsize": 7},
               wedgeprops={"width": 0.33, "edgecolor": "white", "alpha": 0.75})
    ax_pie.set_title(f"Edit pairs by category and edit type (n={total})")
    ax_bar.barh([f"{t} ({c[:4]})" for c, t, _ in outer], [k for _, _, k in outer],
                color=[CATEGORY_COLORS.get(c, "#999999") for c, _, _ in outer])
    ax_bar.invert_yaxis()
    ax_bar.set_xlabel("pairs")
    ax_bar.tick_params(axis="y", labelsize=7)
    ax_bar.set_title("Counts per edit type")
    fig.tight_layout()
    if save:
        fig.savefig(save, dpi=110)
    return fig
