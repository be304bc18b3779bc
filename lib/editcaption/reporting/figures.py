"""Figures the notebooks show: example pairs with their ground truth, and the paper's Figure 2."""
from __future__ import annotations

import textwrap
from collections import Counter
from pathlib import Path

import matplotlib.pyplot as plt

CATEGORY_COLORS = {"semantic": "#4C72B0", "stylistic": "#DD8452", "structural": "#55A868", "": "#999999"}


def finish_figure(fig, save: str | Path | None):
    """Lay the figure out, save it when asked (a .png also as a .pdf beside it), and return it (so a notebook
    cell shows it)."""
    fig.tight_layout()
    if save:
        save = Path(save)
        fig.savefig(save, dpi=110)
        if save.suffix == ".png":
            fig.savefig(save.with_suffix(".pdf"))  # the vector copy for papers and slides
    return fig


def _image_text_grid(rows: list[tuple], *, wrap: int, text_ratio: float = 2.4, sizes: bool = False,
                     save: str | Path | None = None):
    """One figure row per (source image, target image, text lines, text colour): the two images, then the
    lines wrapped at `wrap` characters; `sizes` titles each image with its pixel size."""
    n = max(len(rows), 1)
    fig, axes = plt.subplots(n, 3, figsize=(12, 2.4 * n), gridspec_kw={"width_ratios": [1, 1, text_ratio]},
                             squeeze=False)
    for i, (source, target, lines, color) in enumerate(rows):
        for ax, image, title in ((axes[i, 0], source, "source"), (axes[i, 1], target, "target")):
            ax.imshow(image)
            if sizes:
                ax.set_title(f"{title} ({image.width}x{image.height})", fontsize=8)
            ax.axis("off")
        text = "\n".join(textwrap.fill(line, wrap, subsequent_indent="   ") for line in lines)
        axes[i, 2].text(0, 1, text, va="top", ha="left", fontsize=8, family="monospace", color=color)
        axes[i, 2].axis("off")
    for ax in axes[len(rows):].ravel():
        ax.axis("off")
    return finish_figure(fig, save)


def plot_pair_examples(pairs, n: int = 6, *, wrap: int = 48, save: str | Path | None = None):
    """A grid of (source, target, text) rows: the instruction, the GT primary and secondary changes."""
    rows = []
    for row in (pairs[i] for i in range(min(n, len(pairs)))):
        lines = [f"[{row['category'] or '?'} / {row['edit_type'] or '?'}]  id {row['id']}",
                 "instruction: " + (row["instruction"] or "(none)")]
        lines += ["primary: " + c for c in row["gt"]["primary_changes"]]
        lines += ["secondary: " + c for c in row["gt"]["secondary_changes"]]
        rows.append((row["source_image"], row["target_image"], lines, "black"))
    return _image_text_grid(rows, wrap=wrap, text_ratio=1.8, sizes=True, save=save)


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
    return finish_figure(fig, save)


def plot_training_curves(log_history: list[dict], *, title: str = "training", save: str | Path | None = None):
    """Loss (and learning rate, on a second axis) against the optimizer step, from a trainer's log_history."""
    steps = [e["step"] for e in log_history if "loss" in e]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot(steps, [e["loss"] for e in log_history if "loss" in e], color="#4C72B0", label="train loss")
    evals = [(e["step"], e["eval_loss"]) for e in log_history if "eval_loss" in e]
    if evals:
        ax.plot(*zip(*evals), "o-", color="#C44E52", label="validation loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    lr = [(e["step"], e["learning_rate"]) for e in log_history if "learning_rate" in e]
    if lr:
        ax2 = ax.twinx()
        ax2.plot(*zip(*lr), color="#999999", linestyle="--", label="learning rate")
        ax2.set_ylabel("learning rate", color="#777777")
    ax.legend(loc="upper right")
    ax.set_title(title)
    return finish_figure(fig, save)


def plot_instruction_examples(pairs, instructions: dict[str, list[str]], n: int = 6, *, wrap: int = 60,
                              save: str | Path | None = None):
    """Source, target, then the reference instruction and each model's instruction for the first n pairs."""
    rows = []
    for i in range(min(n, len(pairs))):
        row = pairs[i]
        lines = [f"[{row['edit_type']}] reference: {row['instruction']}"]
        lines += [f"{name}: {texts[i]}" for name, texts in instructions.items()]
        rows.append((row["source_image"], row["target_image"], lines, "black"))
    return _image_text_grid(rows, wrap=wrap, save=save)


def plot_score_comparison(table, *, save: str | Path | None = None):
    """Bars of S (with its CI) and of each failure-mode rate for models side by side (a comparison_table)."""
    fig, (ax_s, ax_err) = plt.subplots(1, 2, figsize=(11, 3.5))
    names = list(table.index)
    ax_s.bar(names, table["S"], yerr=[table["S"] - table["S low"], table["S high"] - table["S"]],
             color="#4C72B0", capsize=4)
    ax_s.set_ylim(0, 5)
    ax_s.set_ylabel("composite S (0-5)")
    modes = [c for c in table.columns if c.endswith(" err")] + ["P0 rate"]
    width = 0.8 / len(names)
    for k, name in enumerate(names):
        ax_err.bar([m + k * width for m in range(len(modes))], table.loc[name, modes], width, label=name)
    ax_err.set_xticks([m + width * (len(names) - 1) / 2 for m in range(len(modes))], modes)
    ax_err.set_ylabel("share of test pairs")
    ax_err.legend()
    return finish_figure(fig, save)


def plot_score_histogram(all_scores: list[float], kept_scores: list[float], threshold: float, *, field: str = "overall",
                         save: str | Path | None = None):
    """The filter's score histogram (0-10): every scored caption, the kept ones, and the threshold line."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    bins = [i / 2 for i in range(21)]
    ax.hist(all_scores, bins=bins, color="#BBBBBB", label=f"all scored ({len(all_scores)})")
    ax.hist(kept_scores, bins=bins, color="#55A868", label=f"kept ({len(kept_scores)})")
    ax.axvline(threshold, color="#C44E52", linestyle="--", label=f"threshold {threshold:g}")
    ax.set_xlabel(f"{field} (0-10)")
    ax.set_ylabel("captions")
    ax.set_title("Quality filter: score distribution")
    ax.legend()
    return finish_figure(fig, save)


def plot_funnel(counts: dict[str, int], *, save: str | Path | None = None):
    """Horizontal bars: how many pairs are left after each step of the data construction."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(counts) + 1.2))
    names, values = list(counts), list(counts.values())
    bars = ax.barh(names, values, color="#4C72B0")
    ax.invert_yaxis()
    top = max(values) if values else 1
    for bar, value in zip(bars, values):
        ax.text(bar.get_width() + top * 0.01, bar.get_y() + bar.get_height() / 2, f"{value} ({value / top:.0%})",
                va="center", fontsize=8)
    ax.set_xlim(0, top * 1.2)
    ax.set_xlabel("pairs")
    ax.set_title("SFT data construction funnel")
    return finish_figure(fig, save)


def plot_failure_modes(by_stage: dict[str, dict], *, save: str | Path | None = None):
    """Grouped bars: the share of instructions with each failure mode (and with any P0 error) per stage,
    from `construct.failure_modes` summaries."""
    modes = [m for m in next(iter(by_stage.values()))["mode_share"]] + ["any P0"]
    fig, ax = plt.subplots(figsize=(8, 3.8))
    width = 0.8 / len(by_stage)
    for k, (stage, summary) in enumerate(by_stage.items()):
        values = [summary["mode_share"][m] or 0.0 for m in modes[:-1]] + [summary["p0_share"] or 0.0]
        bars = ax.bar([i + k * width for i in range(len(modes))], values, width, label=f"{stage} (n={summary['n']})")
        ax.bar_label(bars, labels=[f"{v:.0%}" for v in values], fontsize=7)
    ax.set_xticks([i + width * (len(by_stage) - 1) / 2 for i in range(len(modes))], modes)
    ax.set_ylabel("share of instructions")
    ax.set_title("Failure modes found by the rule judge")
    ax.legend(fontsize=8)
    return finish_figure(fig, save)


def plot_refinement_examples(pairs, ids: list[str], candidates: dict[str, str], refined: dict[str, str], *,
                             notes: dict[str, str] | None = None, wrap: int = 60, save: str | Path | None = None):
    """Source, target, the candidate caption (with a note, e.g. its injected errors) and the refined
    instruction, for the pairs `ids`."""
    where = {pid: i for i, pid in enumerate(pairs["id"])}
    rows = []
    for row in (pairs[where[pid]] for pid in ids):
        lines = [f"[{row['edit_type']}] id {row['id']}", "candidate: " + candidates[row["id"]]]
        if notes and notes.get(row["id"]):
            lines.append("  (" + notes[row["id"]] + ")")
        lines.append("refined:   " + refined[row["id"]])
        rows.append((row["source_image"], row["target_image"], lines, "black"))
    return _image_text_grid(rows, wrap=wrap, save=save)


# --- notebooks 03 and 04: preference data and HAE-DPO margins -------------------------------------------

MODE_COLORS = {"orientation": "#4C72B0", "viewpoint": "#DD8452", "detail": "#55A868"}
SEVERITY_COLORS = {"P0": "#C44E52", "P1": "#DD8452", "P2": "#8C8C8C"}


def plot_mode_severity_counts(table, *, target_mix: dict[str, float] | None = None, save: str | Path | None = None):
    """Stacked bars of preference rows per failure mode split by severity (a mode x severity table), with
    each mode's achieved share and, given `target_mix`, its target share."""
    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    bottom = [0] * len(table.index)
    for severity in table.columns:
        values = list(table[severity])
        ax.bar(list(table.index), values, bottom=bottom, label=severity, color=SEVERITY_COLORS.get(severity))
        bottom = [b + v for b, v in zip(bottom, values)]
    total = sum(bottom) or 1
    for x, (mode, height) in enumerate(zip(table.index, bottom)):
        label = f"{height / total:.1%}" + (f" (target {target_mix[mode]:.1%})" if target_mix else "")
        ax.text(x, height, label, ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("preference pairs")
    ax.set_ylim(0, max(bottom + [1]) * 1.2)
    ax.legend(title="severity")
    return finish_figure(fig, save)


def plot_preference_examples(preferences, ids: list[str], *, wrap: int = 60, save: str | Path | None = None):
    """Source, target, the rejected instruction with its failure mode and severity, and the chosen correction."""
    where = {pid: i for i, pid in enumerate(preferences["id"])}
    rows = []
    for row in (preferences[where[pid]] for pid in ids):
        lines = [f"[{row['error_type']} · {row['severity']}] id {row['id']}", "rejected: " + row["rejected"],
                 "chosen:   " + row["chosen"]]
        rows.append((*row["images"][:2], lines, MODE_COLORS.get(row["error_type"], "black")))
    return _image_text_grid(rows, wrap=wrap, save=save)


def plot_margin_distributions(margins, *, save: str | Path | None = None):
    """m_i per preference pair (a `margin.reference_margins` frame) by failure mode and by severity:
    one box per group with the pairs drawn over it."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5), sharey=True)
    for ax, column, order, colors in ((axes[0], "error_type", list(MODE_COLORS), MODE_COLORS),
                                      (axes[1], "severity", list(SEVERITY_COLORS), SEVERITY_COLORS)):
        groups = [margins.loc[margins[column] == g, "margin"].tolist() for g in order]
        ax.boxplot([g if g else [float("nan")] for g in groups], showfliers=False)
        ax.set_xticks(range(1, len(order) + 1), [f"{g}\n(n={len(v)})" for g, v in zip(order, groups)])
        for x, (group, values) in enumerate(zip(order, groups), start=1):
            ax.scatter([x + 0.08 * ((k % 5) - 2) for k in range(len(values))], values, s=12, alpha=0.7,
                       color=colors[group])
        ax.set_xlabel(column.replace("_", " "))
    axes[0].set_ylabel("margin m_i")
    fig.suptitle("HAE margin over the preference set (reference model)")
    return finish_figure(fig, save)


def plot_margin_terms(margins, *, save: str | Path | None = None):
    """Hardness term σ((ℓ_ref(y_r) − ℓ_ref(y_w))/τ) against the severity x type term s_i·c(t_i), one point
    per preference pair, coloured by severity, marker by failure mode."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    markers = {"orientation": "o", "viewpoint": "s", "detail": "^"}
    for (mode, severity), group in margins.groupby(["error_type", "severity"]):
        ax.scatter(group["st_term"], group["h_term"], marker=markers.get(mode, "x"), alpha=0.75,
                   color=SEVERITY_COLORS.get(severity), label=f"{mode} {severity}")
    ax.set_xlabel("severity x type term  s_i · c(t_i)")
    ax.set_ylabel("hardness term  σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ)")
    ax.legend(fontsize=7, ncol=2)
    return finish_figure(fig, save)


def plot_reward_margins(histories: dict[str, list[dict]], *, save: str | Path | None = None):
    """Per variant, TRL's DPO reward margin (β·Δ log-ratio, chosen − rejected) and reward accuracy against the
    optimizer step, from each run's log_history."""
    fig, (ax_m, ax_a) = plt.subplots(1, 2, figsize=(11, 3.5))
    for name, history in histories.items():
        for ax, key in ((ax_m, "rewards/margins"), (ax_a, "rewards/accuracies")):
            points = [(e["step"], e[key]) for e in history if key in e]
            if points:
                ax.plot(*zip(*points), "o-", markersize=3, label=name)
    ax_m.set_ylabel("reward margin")
    ax_a.set_ylabel("reward accuracy")
    for ax in (ax_m, ax_a):
        ax.set_xlabel("step")
        ax.legend(fontsize=8)
    return finish_figure(fig, save)


def plot_logged_margins(histories: dict[str, list[dict]], *, save: str | Path | None = None):
    """Per variant, the training-time margin m_i averaged over the logged windows for each failure mode and
    severity (the trainer's `hae/margin/<group>` metrics); dpo logs zeros, st_only no hardness."""
    groups = list(MODE_COLORS) + list(SEVERITY_COLORS)
    fig, ax = plt.subplots(figsize=(9, 3.5))
    width = 0.8 / max(len(histories), 1)
    for k, (name, history) in enumerate(histories.items()):
        means = []
        for group in groups:
            values = [e[f"hae/margin/{group}"] for e in history if f"hae/margin/{group}" in e]
            means.append(sum(values) / len(values) if values else float("nan"))
        ax.bar([g + k * width for g in range(len(groups))], means, width, label=name)
    ax.set_xticks([g + width * (len(histories) - 1) / 2 for g in range(len(groups))], groups)
    ax.set_ylabel("logged margin m_i (mean)")
    ax.legend(fontsize=8)
    return finish_figure(fig, save)
