"""Targeted held-out subsets: per failure mode, fresh pairs of the edit types where that mode can occur, and
the paired comparison of models' error rates on them.

A mixed test split spreads a failure mode over many pairs that cannot show it (a background change has no
direction to reverse), so an effect on one mode drowns in noise. Each targeted subset holds only pairs
whose primary change can carry its mode:

- orientation: objects that move or turn (a direction to state, on the viewer's left/right/up/down);
- viewpoint: mirrors, rotations and zooms of the whole view;
- detail: changes whose value must be stated (the colour of an added, removed or recoloured object, the new
  background, the brightness, the texture, ...).

The subsets are drawn by notebook 01 from their own generator seeds (a validation set for choosing the DPO
budget and a test set for the final numbers), disjoint from every other split. On each subset the measures
are the share of pairs with a P0 error and the share with an error of the subset's mode (`DEFAULT_MEASURES`),
and on request those of the paper's table 2 (`MEASURES`; `eval.table2` puts them together): the share of
correct pairs and, by the paper's hierarchy (a pair counts at its worst severity), of P0, P1 and P2 pairs; the
share of multi-clause answers and of answers with an unsupported clause; and the words per answer
(`answer_words`). Two models are compared pair by pair (McNemar's exact test, a paired bootstrap interval of
the difference, and the smallest difference the subset can detect).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import datasets
import pandas as pd

from editcaption import records
from editcaption.data import answer_shape, construct
from editcaption.eval import stats
from editcaption.eval.summary import evaluate_checkpoint
from editcaption.world.rule_judge import ERROR_KINDS

MODES = records.ERROR_TYPES  # orientation, viewpoint, detail
MODE_EDIT_TYPES = {
    "orientation": ("move", "motion"),
    "viewpoint": ("mirror", "rotate", "zoom"),
    "detail": ("add", "remove", "replace", "color", "background", "tone", "material", "style", "text", "resize"),
}
SPLIT_SEED_OFFSETS = {"validation": 3_000_000, "test": 4_000_000}  # + 100_000 x the mode's index
# Per pair, True where: it has a P0 error of any type (`p0`); an error of the subset's own mode (`mode`); no
# error at all (`correct`); its worst error is P1 (`p1`: a P1 error and no P0) or P2 (`p2`: a P2 and no P0/P1),
# so that correct + p0 + p1 + p2 = 1; the answer has two or more imperative edit clauses (`multi_clause`); some
# error of kind "unsupported" at any severity, a clause stating a change the pair does not show (`unsupported`).
MEASURES = ("p0", "mode", "correct", "p1", "p2", "multi_clause", "unsupported")
DEFAULT_MEASURES = ("p0", "mode")  # what error_rates and paired_comparisons report unless asked for more
WORDS = "words"  # words per answer: a number per pair, not a flag (`answer_words`, `measure_values`)
_SEVERITY_OF = {"correct": "", "p1": "P1", "p2": "P2"}


def subset_edit_types(mode: str, world_edit_types: str = "") -> list[str]:
    """The edit types of `mode`'s subset within the world (`world_edit_types`: comma-separated, empty = all)."""
    world = construct.parse_edit_types(world_edit_types)
    return [t for t in MODE_EDIT_TYPES[mode] if world is None or t in world]


def draw_subsets(n_per_mode: int, *, split: str, seed: int, exclude: Mapping[str, datasets.Dataset],
                 image_size: int = 128, layout: str = "grid", edit_types: str = "", max_objects: int = 0,
                 out_dir: str | Path | None = None) -> tuple[dict[str, datasets.Dataset], dict[str, str]]:
    """n_per_mode fresh pairs per failure mode for `split` (validation or test), disjoint from `exclude` and
    from each other; saved under out_dir/<mode>. Returns the subsets and, per mode the world cannot show
    (none of its edit types is in the world), why it was skipped."""
    if split not in SPLIT_SEED_OFFSETS:
        raise ValueError(f"split must be one of {sorted(SPLIT_SEED_OFFSETS)}, got {split!r}")
    if n_per_mode < 1:
        raise ValueError(f"the targeted {split} subsets need n >= 1 pairs per mode, got {n_per_mode}")
    subsets, skipped, taken = {}, {}, dict(exclude)
    for index, mode in enumerate(MODES):
        types = subset_edit_types(mode, edit_types)
        if not types:
            skipped[mode] = f"the world's edit types ({edit_types}) hold none of {', '.join(MODE_EDIT_TYPES[mode])}"
            continue
        pairs, _ = construct.fresh_pairs(n_per_mode, generator_seed=seed + SPLIT_SEED_OFFSETS[split] + 100_000 * index,
                                         exclude=taken, image_size=image_size, layout=layout,
                                         edit_types=",".join(types), max_objects=max_objects)
        subsets[mode] = taken[f"{split} {mode}"] = pairs
        if out_dir is not None:
            records.save_pairs(pairs, Path(out_dir) / mode)
    return subsets, skipped


def load_subsets(folder: str | Path) -> dict[str, datasets.Dataset]:
    """The subsets notebook 01 saved under `folder` (one pairs folder per mode, in MODES order)."""
    folder = Path(folder)
    found = {mode: records.load_pairs(folder / mode) for mode in MODES if (folder / mode).is_dir()}
    if not found:
        raise records.RecordError("no targeted subsets here (notebook 01 writes them)", file=folder)
    return found


def check_measures(measures: Sequence[str], *, words: bool = False) -> list[str]:
    """`measures` as a list, refused with the allowed names when one is unknown (`words` allows WORDS)."""
    allowed = (*MEASURES, WORDS) if words else MEASURES
    if isinstance(measures, str):
        measures = [measures]
    unknown = [m for m in measures if m not in allowed]
    if unknown:
        raise ValueError(f"unknown measure(s) {', '.join(map(repr, unknown))}: allowed are {', '.join(allowed)}")
    return list(measures)


def _column(scores: pd.DataFrame, column: str, measure: str) -> pd.Series:
    if column not in scores:
        raise KeyError(f"the measure {measure!r} needs the per-pair column {column!r}, which these scores lack "
                       "(score them with summary.score_instructions)")
    return scores[column]


def measure_flag(scores: pd.DataFrame, mode: str, measure: str) -> pd.Series:
    """Per pair, True where it counts under `measure` (one of MEASURES) on `mode`'s subset, from
    `summary.score_instructions` (`all`: each pair's own mode, see `pooled_scores`)."""
    check_measures([measure])
    if measure == "p0":
        return scores["p0"].astype(bool)
    if measure == "mode":
        return scores[f"has_{mode}"].astype(bool)
    if measure in _SEVERITY_OF:
        return _column(scores, "severity", measure).fillna("").eq(_SEVERITY_OF[measure])
    if measure == "multi_clause":
        texts = _column(scores, "instruction", measure)
        return texts.map(lambda t: answer_shape.edit_clauses(t if isinstance(t, str) else "") >= 2).astype(bool)
    return _column(scores, "any_unsupported", measure).astype(bool)


def measure_values(scores: pd.DataFrame, mode: str, measure: str) -> pd.Series:
    """Per pair, the value whose mean a table reports: 1.0 / 0.0 for a flag of MEASURES, the answer's word count
    for WORDS."""
    check_measures([measure], words=True)
    if measure == WORDS:
        texts = _column(scores, "instruction", measure)
        return texts.map(lambda t: float(answer_shape.words(t if isinstance(t, str) else "")))
    return measure_flag(scores, mode, measure).astype(float)


def error_flags(scores: pd.DataFrame, mode: str, measures: Sequence[str] = DEFAULT_MEASURES) -> dict[str, pd.Series]:
    """Per pair and measure (by default `p0`: a P0 error, and `mode`: an error of `mode`), True where it counts,
    from `summary.score_instructions`; see MEASURES for the others."""
    return {measure: measure_flag(scores, mode, measure) for measure in check_measures(measures)}


def error_rates(scores: Mapping[str, Mapping[str, pd.DataFrame]], *, seed: int = 0,
                measures: Sequence[str] = DEFAULT_MEASURES) -> pd.DataFrame:
    """One row per (model, subset, measure): the rate with its 95 % bootstrap interval.
    `scores`: model -> mode -> per-pair scores of that model on that mode's subset; `measures`: of MEASURES."""
    measures, rows = check_measures(measures), []
    for model, by_mode in scores.items():
        for mode, frame in by_mode.items():
            for measure, flags in error_flags(frame, mode, measures).items():
                rate, low, high = stats.bootstrap_ci(flags.astype(float), seed=seed)
                rows.append({"model": model, "subset": mode, "measure": measure, "n": len(flags),
                             "rate": rate, "low": low, "high": high})
    return pd.DataFrame(rows)


def paired_comparisons(scores: Mapping[str, Mapping[str, pd.DataFrame]], comparisons: Sequence[tuple[str, str]], *,
                       seed: int = 0, measures: Sequence[str] = DEFAULT_MEASURES) -> pd.DataFrame:
    """One row per (comparison a -> b, subset, measure): both rates on the same pairs, the difference
    b - a with its paired 95 % interval, McNemar's exact p-value and the smallest detectable difference.
    `measures`: of MEASURES."""
    measures, rows = check_measures(measures), []
    for a, b in comparisons:
        for mode, frame_a in scores[a].items():
            frame_b = scores[b][mode]
            if list(frame_a["id"]) != list(frame_b["id"]):
                raise ValueError(f"{a} and {b} were scored on different pairs of the {mode} subset")
            flags_a, flags_b = error_flags(frame_a, mode, measures), error_flags(frame_b, mode, measures)
            for measure in measures:
                test = stats.paired_rates(flags_a[measure], flags_b[measure], seed=seed)
                rows.append({"a": a, "b": b, "subset": mode, "measure": measure, **test})
    return pd.DataFrame(rows)


def plain_words(comparisons: pd.DataFrame, *, measure: str = "p0") -> list[str]:
    """One sentence per comparison and subset, drawn from the numbers: better, worse, or no detectable change."""
    names = {"p0": "P0 error rate", "correct": "share of correct answers", "p1": "share of P1 answers",
             "p2": "share of P2 answers", "multi_clause": "share of multi-clause answers",
             "unsupported": "share of answers with an unsupported clause"}
    lines = []
    for row in comparisons[comparisons["measure"] == measure].itertuples():
        what = names.get(measure, f"{row.subset} error rate")
        if row.high < 0:
            verdict = "lower"
        elif row.low > 0:
            verdict = "higher"
        else:
            verdict = "not detectably different"
        lines.append(f"{row.subset} subset: {row.b} vs {row.a}: {what} {row.rate_b:.1%} vs {row.rate_a:.1%} "
                     f"({row.diff:+.1%}, 95 % CI [{row.low:+.1%}, {row.high:+.1%}], McNemar p = {row.p_value:.3g}; "
                     f"{row.n} pairs detect about {row.min_detectable_diff:.1%}): {verdict}")
    return lines


def draw_splits(n_validation: int, n_test: int, *, pairs_source: str, seed: int,
                exclude: Mapping[str, datasets.Dataset], out_dir: str | Path, **world) -> dict:
    """Notebook 01's targeted subsets: `n_validation` and `n_test` pairs per failure mode (0 skips a split),
    disjoint from `exclude` and from each other, saved under out_dir/<split>/<mode>. `world`: image_size,
    layout, edit_types, max_objects. Only synthetic pairs have them (the generator draws them). Returns
    {split: {mode: n}} and the modes skipped, with why."""
    if pairs_source != "synthetic":
        return {"n": {}, "skipped": {m: f"pairs_source {pairs_source!r}: only the synthetic world draws them"
                                     for m in MODES}, "edit_types": {}}
    counts, skipped, taken = {}, {}, dict(exclude)
    for split, n in (("validation", n_validation), ("test", n_test)):
        if not n:
            continue
        subsets, skipped = draw_subsets(n, split=split, seed=seed, exclude=taken, out_dir=Path(out_dir) / split, **world)
        taken.update({f"{split} {mode}": pairs for mode, pairs in subsets.items()})
        counts[split] = {mode: len(pairs) for mode, pairs in subsets.items()}
    return {"n": counts, "skipped": skipped, "edit_types": {m: subset_edit_types(m, world.get("edit_types", ""))
                                                           for m in MODES}}


def score_models(models: Mapping[str, str], subsets: Mapping[str, datasets.Dataset], cache_dir: str | Path, *,
                 batch_size: int = 16, max_new_tokens: int = 48) -> dict[str, dict[str, pd.DataFrame]]:
    """Each model writes an instruction for every pair of every subset (greedy, batched, cached under
    cache_dir/<model>/<mode>.jsonl) and the rule judge scores it: model -> mode -> per-pair scores."""

    scores = {}
    for name, path in models.items():
        scores[name] = {}
        for mode, pairs in subsets.items():
            cache = Path(cache_dir) / name / f"{mode}.jsonl"
            cache.parent.mkdir(parents=True, exist_ok=True)
            _, scores[name][mode] = evaluate_checkpoint(path, pairs, batch_size=batch_size,
                                                        max_new_tokens=max_new_tokens, cache_path=cache)
    return scores


def pooled_rate(by_mode: Mapping[str, pd.DataFrame], *, measure: str = "p0", seed: int = 0) -> dict:
    """The rate of `measure` (of MEASURES) over all subsets' pairs together, with its 95 % bootstrap interval."""
    flags = pd.concat([measure_flag(frame, mode, measure) for mode, frame in by_mode.items()])
    rate, low, high = stats.bootstrap_ci(flags.astype(float), seed=seed)
    return {"n": int(len(flags)), measure: rate, "low": low, "high": high}


def pooled_scores(by_mode: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """All subsets' per-pair scores as one frame whose `has_<mode>` column for the `all` subset is the pair's own
    subset mode (so `error_flags(frame, "all")` reads each pair's targeted mode)."""
    parts = [frame.assign(has_all=frame[f"has_{mode}"]) for mode, frame in by_mode.items()]
    return pd.concat(parts, ignore_index=True)


def with_pooled(scores: Mapping[str, Mapping[str, pd.DataFrame]]) -> dict[str, dict[str, pd.DataFrame]]:
    """`scores` with an `all` subset per model: every targeted pair, each judged on its own subset's mode."""
    return {model: {**by_mode, "all": pooled_scores(by_mode)} for model, by_mode in scores.items()}


def comparisons_for(names: Sequence[str]) -> list[tuple[str, str]]:
    """The paired comparisons worth making among the models present: base -> SFT, SFT -> each DPO variant,
    standard DPO -> each margin variant (table 4's question), and the controls: SFT -> NLL only -> DPO (what the
    preference term adds beyond imitation), DPO -> constant margin -> HAE-DPO (what the margin's size and its
    adaptivity each add)."""
    pairs = [("base", "SFT"), ("SFT", "dpo"), ("SFT", "hae"), ("dpo", "st_only"), ("dpo", "h_only"), ("dpo", "hae"),
             ("SFT", "nll_only"), ("nll_only", "dpo"), ("dpo", "const"), ("const", "hae")]
    return [(a, b) for a, b in pairs if a in names and b in names]


def seeded_rates(scores: Mapping[str, Mapping[str, pd.DataFrame]], runs: Mapping[str, tuple[str, int]], *,
                 measure: str = "p0", n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Table 4 over seeds: per variant and subset, the rate of `measure` (of MEASURES, or WORDS: then `rate` is
    the mean words per answer) averaged over its seeds' runs with a 95 % interval from a two-level bootstrap
    (seeds with replacement, then pairs with replacement within each drawn seed), and the per-seed rates.
    `runs`: run label -> (variant, seed), for the labels in `scores`."""
    check_measures([measure], words=True)
    by_variant: dict[str, list[str]] = {}
    for label, (variant, _) in runs.items():
        if label in scores:
            by_variant.setdefault(variant, []).append(label)
    rows = []
    for variant, labels in by_variant.items():
        for mode in scores[labels[0]]:
            flags = [measure_values(scores[label][mode], mode, measure).to_numpy(dtype=float) for label in labels]
            rate, low, high = stats.two_level_ci(flags, n_boot=n_boot, seed=seed)
            rows.append({"variant": variant, "subset": mode, "measure": measure, "seeds": len(labels),
                         "n_per_seed": int(len(flags[0])), "rate": rate, "low": low, "high": high,
                         "per_seed": [round(float(f.mean()), 4) for f in flags]})
    return pd.DataFrame(rows)


def answer_words(scores: Mapping[str, Mapping[str, pd.DataFrame]], *, n_boot: int = 2000,
                 seed: int = 0) -> pd.DataFrame:
    """One row per (model, subset): the mean words per answer (`answer_shape.words`) with its 95 % bootstrap
    interval (`words`, `low`, `high`) over the subset's `n` pairs."""
    rows = []
    for model, by_mode in scores.items():
        for mode, frame in by_mode.items():
            mean, low, high = stats.bootstrap_ci(measure_values(frame, mode, WORDS), n_boot=n_boot, seed=seed)
            rows.append({"model": model, "subset": mode, "n": len(frame), "words": mean, "low": low, "high": high})
    return pd.DataFrame(rows, columns=["model", "subset", "n", "words", "low", "high"])


def rate_table(rates: pd.DataFrame) -> pd.DataFrame:
    """`error_rates` as one row per model and a column per (subset, measure): "rate [low, high]"."""
    cells = rates.assign(cell=[f"{r:.3f} [{lo:.3f}, {hi:.3f}]" for r, lo, hi in zip(rates["rate"], rates["low"], rates["high"])])
    return cells.pivot_table(index="model", columns=["subset", "measure"], values="cell", aggfunc="first", sort=False)


def models_to_compare(sources: Mapping[str, str], runs: Mapping[str, Mapping]) -> dict[str, str]:
    """Notebook 05's models for the targeted subsets: our sources (base, sft -> "SFT", each variant) and every
    further seed notebook 04 trained (`<variant>_seed<k>`), by label."""
    models = {("SFT" if source == "sft" else source): path for source, path in sources.items()}
    return {**models, **{label: run["model"] for label, run in runs.items() if label not in models}}


def error_kinds(scores: Mapping[str, Mapping[str, pd.DataFrame]]) -> pd.DataFrame:
    """Per model and subset, the share of pairs with a P0 error of each kind (`judges.ERROR_KINDS`: a change or
    its value left out, a value stated wrongly, the wrong kind of edit, an edit nothing supports): whether a
    model fails by saying too little or by saying the wrong thing."""

    rows = [{"model": model, "subset": mode, "n": len(frame),
             **{kind: float(frame[f"p0_{kind}"].mean()) for kind in ERROR_KINDS if kind != "vague"}}
            for model, by_mode in scores.items() for mode, frame in by_mode.items()]
    return pd.DataFrame(rows)
