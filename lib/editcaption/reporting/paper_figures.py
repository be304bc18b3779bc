"""Notebook 08's figures: the paper's numbers beside this run's (figure 2, score bars with CIs, table 5, margins)."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from editcaption.records import load_pairs
from editcaption.reporting import figures, paper

PAPER_COLOR, OURS_COLOR = "#8C8C8C", "#4C72B0"
HEADLINE_METRICS = {"table2": ("Correct", "P0"), "table3": ("S",), "table4": ("S",)}


def save_figure(fig, out_dir: str | Path, stem: str) -> list[Path]:
    """Save `fig` as <stem>.png and <stem>.pdf under out_dir, close it, return both paths."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = [out_dir / f"{stem}.png", out_dir / f"{stem}.pdf"]
    for path in written:
        fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return written


def _not_run(ax, what: str):
    ax.text(0.5, 0.5, f"this run: {what} not run", ha="center", va="center", transform=ax.transAxes, color="#C44E52")
    ax.set_xticks([])
    ax.set_yticks([])


def plot_figure2(metrics01: dict | None):
    """Category shares (paper vs this run) and this run's edit-type counts, from notebook 01's metrics.json."""
    published = paper.paper_results("figure2")
    fig, (ax_share, ax_types) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [1, 1.4]})
    categories = [m.split()[0].lower() for m in published["metric"]]
    x = np.arange(len(categories))
    ax_share.bar(x - 0.2, published["value"], 0.4, color=PAPER_COLOR, label="paper (150K pairs)")
    if metrics01:
        shares = [100 * metrics01["category_share"].get(c, 0.0) for c in categories]
        ax_share.bar(x + 0.2, shares, 0.4, color=OURS_COLOR, label=f"this run (n={metrics01.get('n_pairs', '?')})")
        counts = metrics01["edit_type_counts"]
        ax_types.barh(list(counts), list(counts.values()), color=OURS_COLOR)
        ax_types.invert_yaxis()
        ax_types.set_xlabel("pairs")
        ax_types.tick_params(axis="y", labelsize=7)
        ax_types.set_title("This run: pairs per edit type")
    else:
        _not_run(ax_types, "01_dataset_construction")
    ax_share.set_xticks(x, categories)
    ax_share.set_ylabel("share of pairs (%)")
    ax_share.set_title("Figure 2: edit categories")
    ax_share.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_margins(margins: pd.DataFrame | None) -> list:
    """Notebook 04's margins (margins.csv): m_i by failure mode and severity, and its two terms against each other."""
    if margins is None:
        fig, ax = plt.subplots(figsize=(7, 3))
        _not_run(ax, "04_hae_dpo margins")
        return [fig]
    return [figures.plot_margin_distributions(margins), figures.plot_margin_terms(margins)]


def _ours_bars(ax, table: str, rows: pd.DataFrame, metric: str, scale: str):
    """Paper value (grey) beside ours with its CI (blue) for each of our models, on one benchmark."""
    published = paper.paper_results(table)
    spec = paper.published_columns(published)
    labels, theirs = [], []
    for r in rows.itertuples():
        target = paper.paper_row(table, r.model, scale)
        column = paper.match_column(table, r.benchmark, metric, spec)
        cell = next(((b, m) for b, m, label in spec if label == column), (None, None))
        hit = published[(published.model == target) & (published.benchmark == cell[0]) & (published.metric == cell[1])]
        labels.append(r.model + (f"\n≈ {target.replace(' (', chr(10) + '(')}" if target else ""))
        theirs.append(hit["value"].iloc[0] if len(hit) else np.nan)
    low = (rows["value"] - rows["low"]).fillna(0.0)
    high = (rows["high"] - rows["value"]).fillna(0.0)
    x = np.arange(len(labels))
    ax.bar(x - 0.2, theirs, 0.4, color=PAPER_COLOR, label="paper")
    ax.bar(x + 0.2, rows["value"], 0.4, yerr=[low, high], capsize=3, color=OURS_COLOR, label="this run (95% CI)")
    ax.set_xticks(x, labels, fontsize=7)


def plot_score_bars(table: str, ours: pd.DataFrame | None, *, scale: str = "235B-A22B"):
    """Per headline metric (table 2: Correct and P0; tables 3-4: S) and per benchmark of ours: the paper's value for
    the row each of our models maps to, beside ours with its CI; ours None -> the paper's values alone."""
    metrics = HEADLINE_METRICS[table]
    if ours is None:
        published = paper.paper_results(table)
        first = published["benchmark"].iloc[0]
        fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4), squeeze=False)
        for ax, metric in zip(axes[0], metrics):
            sub = published[(published.benchmark == first) & (published.metric == metric)]
            ax.barh(sub["model"], sub["value"], color=PAPER_COLOR)
            ax.invert_yaxis()
            ax.tick_params(axis="y", labelsize=7)
            ax.set_title(f"{table} paper: {first} {metric} (this run: not run)", fontsize=9)
        fig.tight_layout()
        return fig
    panels = list(dict.fromkeys(zip(ours["benchmark"], ours["judge"])))  # one panel per benchmark and judge
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(6 * len(panels), 4 * len(metrics)), squeeze=False)
    for i, metric in enumerate(metrics):
        for j, (benchmark, judge) in enumerate(panels):
            rows = ours[(ours.benchmark == benchmark) & (ours.judge == judge) & (ours.metric == metric)]
            ax = axes[i, j]
            if rows.empty:
                _not_run(ax, f"{benchmark} {metric}")
                continue
            _ours_bars(ax, table, rows, metric, scale)
            ax.set_title(f"{table}: {metric} on {benchmark} (judge {judge})", fontsize=9)
            ax.set_ylabel(metric + (" (%)" if table == "table2" else " (0-5)"))
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_downstream(ours: pd.DataFrame | None):
    """Table 5: the paper's GPT-4.1 ratings per captioner, and this run's editor metrics per captioner with CIs."""
    published = paper.paper_results("table5")
    metrics = [] if ours is None else [m for m in dict.fromkeys(ours["metric"]) if m in ("edit_success", "PSNR", "SSIM")] or \
        list(dict.fromkeys(ours["metric"]))[:3]
    fig, axes = plt.subplots(1, 1 + max(len(metrics), 1), figsize=(5 * (1 + max(len(metrics), 1)), 4), squeeze=False)
    ax = axes[0, 0]
    models = list(dict.fromkeys(published["model"]))
    benchmarks = list(dict.fromkeys(published["benchmark"]))
    width = 0.8 / len(models)
    for k, model in enumerate(models):
        values = [published[(published.model == model) & (published.benchmark == b)]["value"].iloc[0] for b in benchmarks]
        ax.bar(np.arange(len(benchmarks)) + k * width, values, width, label=model)
    ax.set_xticks(np.arange(len(benchmarks)) + width * (len(models) - 1) / 2, benchmarks)
    ax.set_title("Paper: Step1X-Edit fine-tuned per captioner (GPT-4.1)", fontsize=9)
    ax.legend(fontsize=7)
    if ours is None:
        _not_run(axes[0, 1], "07_downstream_editing")
    for ax, metric in zip(axes[0, 1:], metrics):
        rows = ours[ours.metric == metric].drop_duplicates("model")  # one editor metric per captioner
        low = (rows["value"] - rows["low"]).fillna(0.0)
        high = (rows["high"] - rows["value"]).fillna(0.0)
        ax.bar(rows["model"], rows["value"], yerr=[low, high], capsize=3, color=OURS_COLOR)
        ax.set_title(f"This run: {metric} per captioner ({', '.join(dict.fromkeys(rows['data']))})", fontsize=9)
        ax.tick_params(axis="x", labelsize=7, rotation=20)
    fig.tight_layout()
    return fig


FIGURE_INPUTS = {"figure2": "01_dataset_construction/metrics.json", "margins": "04_hae_dpo/margins.csv"}


def write_figures(run_dir: str | Path, out_dir: str | Path, *, scale: str = "235B-A22B") -> tuple[dict[str, list[Path]], list[str]]:
    """Every notebook-08 figure as PNG and PDF under out_dir; returns {name: paths} and the inputs this run lacks
    (a figure whose input is missing still shows the paper's side, or says 'not run')."""
    import json

    run_dir = Path(run_dir)
    missing = [f for f in FIGURE_INPUTS.values() if not (run_dir / f).exists()]
    metrics01 = run_dir / FIGURE_INPUTS["figure2"]
    margins = run_dir / FIGURE_INPUTS["margins"]
    ours = paper.load_ours(run_dir)
    written = {"figure2_distribution": save_figure(
        plot_figure2(json.loads(metrics01.read_text()) if metrics01.exists() else None), out_dir, "figure2_distribution")}
    pairs = run_dir / "01_dataset_construction" / "pairs"
    if pairs.exists():  # the paper's ring chart of category and edit type, from the pairs themselves

        kinds = load_pairs(pairs).select_columns(["category", "edit_type"])
        written["figure2_rings"] = save_figure(figures.plot_edit_distribution(kinds["category"], kinds["edit_type"]),
                                               out_dir, "figure2_rings")
    margin_figures = plot_margins(pd.read_csv(margins) if margins.exists() else None)
    for stem, fig in zip(("margin_distributions", "margin_terms"), margin_figures):
        written[stem] = save_figure(fig, out_dir, stem)
    for table in HEADLINE_METRICS:
        written[f"{table}_scores"] = save_figure(plot_score_bars(table, ours[table], scale=scale), out_dir, f"{table}_scores")
    written["table5_downstream"] = save_figure(plot_downstream(ours["table5"]), out_dir, "table5_downstream")
    return written, missing
