"""Figures of the downstream editing experiment (notebook 07): example edits, edit success per edit type,
table 5's three metrics with CIs, and the editors' training losses."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from editcaption.downstream.edit_eval import MAIN_METRICS
from editcaption.downstream.editor import to_array
from editcaption.reporting.figures import finish_figure


def plot_edit_examples(pairs, outputs: Mapping[str, Sequence[np.ndarray]], indices: Sequence[int], *,
                       scores: Mapping[str, pd.DataFrame] | None = None, wrap: int = 28, save: str | Path | None = None):
    """One row per example: source, GT target, then each captioner's editor output (titled with its PSNR and
    a tick or cross for edit success); the GT instruction under the source."""
    names = list(outputs)
    cols, n = 2 + len(names), max(len(indices), 1)
    fig, axes = plt.subplots(n, cols, figsize=(1.9 * cols, 2.7 * n), squeeze=False)
    for r, i in enumerate(indices):
        row = pairs[int(i)]
        panels = [("source", to_array(row["source_image"])), ("GT target", to_array(row["target_image"]))]
        for name in names:
            title = name
            if scores is not None:
                s = scores[name].iloc[int(i)]
                mark = {True: " ✓", False: " ✗"}.get(s["success"], "")
                title = f"{name}\n{min(s['PSNR'], 99):.1f} dB{mark}"
            panels.append((title, outputs[name][int(i)]))
        for c, (title, image) in enumerate(panels):
            axes[r, c].imshow(image)
            axes[r, c].set_title(title, fontsize=7)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_xlabel(textwrap.fill(f"[{row['edit_type']}] {row['instruction']}", wrap), fontsize=6)
    return finish_figure(fig, save)


def plot_op_success(table: pd.DataFrame, *, save: str | Path | None = None):
    """Grouped bars: edit success (%) per edit type, one bar per captioner."""
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(table) * max(1, len(table.columns)) / 3), 3.4))
    width = 0.8 / max(len(table.columns), 1)
    x = np.arange(len(table))
    for k, name in enumerate(table.columns):
        ax.bar(x + (k - (len(table.columns) - 1) / 2) * width, table[name].fillna(0).to_numpy(), width, label=name)
    ax.set_xticks(x, table.index, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("edit success (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=7, ncol=min(len(table.columns), 3))
    return finish_figure(fig, save)


def plot_table5(summaries: Mapping[str, dict], *, save: str | Path | None = None):
    """Three panels (PSNR, SSIM, edit success) of per-captioner means with their 95 % CIs."""
    names = list(summaries)
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.2))
    for ax, metric in zip(axes, MAIN_METRICS):
        values = np.array([summaries[n][metric]["value"] for n in names])
        err = np.array([[v - summaries[n][metric]["low"], summaries[n][metric]["high"] - v]
                        for n, v in zip(names, values)]).T
        ax.bar(range(len(names)), values, yerr=err, capsize=3, color="#4C72B0")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(metric + (" (%)" if metric == "edit_success" else ""), fontsize=9)
    return finish_figure(fig, save)


def plot_editor_losses(histories: Mapping[str, Sequence], *, save: str | Path | None = None):
    """Each editor's training loss ([step, loss] pairs) against the step."""
    fig, ax = plt.subplots(figsize=(7, 3.4))
    for name, history in histories.items():
        if history:
            ax.plot(*zip(*history), label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted L1 loss")
    ax.legend(fontsize=7)
    return finish_figure(fig, save)
