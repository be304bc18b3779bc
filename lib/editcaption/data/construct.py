"""The SFT data pipeline (paper §4.1, figure 3): pairs → auto-captions → EditScore filter → human
refinement → SFT set. This module holds its first step so far: build or load the edit pairs."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import datasets

from editcaption import records


def build_or_load_pairs(pairs_source: str, *, n: int, seed: int, image_size: int = 128, layout: str = "grid",
                        pairs_path: str = "", out_dir: str | Path | None = None) -> datasets.Dataset:
    """`synthetic` generates n pairs; any other name (hq-edit, bm-bench, magicbrush, own) loads that
    benchmark from `pairs_path` (a local copy) and samples n rows with `seed` (n=0: all).
    With `out_dir`, the pairs are saved there (a `datasets` folder) for the later notebooks."""
    if pairs_source == "synthetic":
        from editcaption.data.synthetic import generate_pairs

        pairs = generate_pairs(n, seed=seed, size=image_size, layout=layout)
    else:
        from editcaption.data.loaders import load_benchmark

        pairs = load_benchmark(pairs_source, pairs_path or None, n=n or None, seed=seed)
    if out_dir is not None:
        records.save_pairs(pairs, out_dir)
    return pairs


def distribution_summary(pairs: datasets.Dataset) -> dict:
    """Category shares, edit-type counts and how many pairs carry secondary changes (Figure 2's data)."""
    categories = pairs["category"]
    n = len(categories)
    changes = pairs["changes"]
    return {
        "n_pairs": n,
        "category_share": {c: k / n for c, k in sorted(Counter(categories).items())},
        "edit_type_counts": dict(sorted(Counter(pairs["edit_type"]).items())),
        "pairs_with_secondary_changes": sum(any(not c["primary"] for c in ch) for ch in changes),
        "mean_primary_changes": sum(sum(c["primary"] for c in ch) for ch in changes) / max(n, 1),
    }
