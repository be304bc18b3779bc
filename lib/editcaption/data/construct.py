"""The SFT data pipeline (paper §4.1, figure 3): pairs → auto-captions → EditScore filter → human
refinement → SFT set, plus a held-out synthetic test split that no training sees.

Each step is one function the notebook calls:
`build_or_load_pairs` → `caption_pairs` → `score_and_filter` → `export_refinement_sheet` →
(`simulate_refinement` or a person's filled file) → `import_refinement` → `build_sft_set` /
`save_sft_set` → `build_test_pairs`. `failure_modes` measures, with the rule judge, the share of
instructions carrying each failure mode at any step; `funnel` counts the pairs left after each step.
"""
from __future__ import annotations

import hashlib
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, NamedTuple, Sequence

import datasets

from editcaption import annotation, generation, records
from editcaption.data import scorers, teacher
from editcaption.data.loaders import load_benchmark
from editcaption.prompts import INSTRUCTION_PROMPT, build_sft_example
from editcaption.world.rule_judge import ERROR_TYPES, RuleJudge
from editcaption.world.synthetic import generate_pairs

TEST_SEED_OFFSET = 1_000_000  # the test split's generator seed is seed + this: its own ids and scenes
SFT_COLUMNS = ("id", "edit_type", "category")  # kept beside TRL's images / prompt / completion
SIMULATED_ANNOTATOR = "simulated"
HUMAN_ANNOTATOR = "human"


def parse_edit_types(edit_types: str) -> list[str] | None:
    """The notebooks' comma-separated `edit_types` parameter as a list; empty means all edit types (None)."""
    names = [t.strip() for t in edit_types.split(",") if t.strip()]
    return names or None


def build_or_load_pairs(pairs_source: str, *, n: int, seed: int, image_size: int = 128, layout: str = "grid",
                        pairs_path: str = "", out_dir: str | Path | None = None,
                        edit_types: str = "", max_objects: int = 0) -> datasets.Dataset:
    """`synthetic` generates n pairs (of the comma-separated `edit_types`, empty: all; at most `max_objects`
    objects per scene, 0: the layout's limit); any other name
    (hq-edit, bm-bench, magicbrush, own) loads that benchmark from `pairs_path` (a local copy) and samples
    n rows with `seed` (n=0: all).
    With `out_dir`, the pairs are saved there (a `datasets` folder) for the later notebooks."""
    if pairs_source == "synthetic":
        pairs = generate_pairs(n, seed=seed, size=image_size, layout=layout, edit_types=parse_edit_types(edit_types),
                               max_objects=max_objects)
    else:
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


# ------------------------------------------------------------------------------------- 1 · captions

def caption_backend(name: str, *, seed: int = 0, teacher_rates: Mapping[str, float] | None = None,
                    **params: Any):
    """The caption backend `name` of `generation.BACKENDS`: the simulated teacher (seed, `teacher_rates`)
    or a model backend, given those of `params` (and `seed`) its constructor takes; empty values ("",
    None) keep the backend's defaults."""
    import inspect

    if name == teacher.NAME:
        return generation.make_backend(name, seed=seed, rates=dict(teacher_rates or {}))
    if name not in generation.BACKENDS:
        raise ValueError(f"unknown caption backend {name!r}; expected one of {sorted(generation.BACKENDS)}")
    params = {"model": params.pop("model_name_or_path", ""), **params, "seed": seed}
    takes = inspect.signature(generation.BACKENDS[name]).parameters
    return generation.make_backend(name, **{k: v for k, v in params.items() if k in takes and v not in ("", None)})


def caption_summary(backend) -> dict:
    """The backend's stats of its last call (counts, timing, tokens), with at most 20 failure reasons."""
    stats = dict(getattr(backend, "stats", {}))
    stats["failures"] = dict(list(stats.get("failures", {}).items())[:20])
    return stats


def teacher_check(backend, pairs: datasets.Dataset) -> dict:
    """For the simulated teacher: its configured vs measured rates and the rule judge's agreement with
    the injected errors (`teacher.check_against_judge`); {} for any other backend."""

    if not isinstance(backend, teacher.SimulatedTeacher):
        return {}
    changes = dict(zip(pairs["id"], pairs["changes"]))
    return teacher.check_against_judge({pid: backend.captions[pid] for pid in pairs["id"]}, changes, backend.rates)


def modes_table(check: dict):
    """The per-mode part of `teacher_check` as a table (empty without a simulated teacher)."""
    import pandas as pd

    return pd.DataFrame(check.get("modes", {})).T


def injected_notes(backend) -> dict[str, str]:
    """Pair id -> "injected: ..." for the simulated teacher's captions ({} for any other backend)."""

    if not isinstance(backend, teacher.SimulatedTeacher):
        return {}
    return {pid: "injected: " + ("; ".join(c.details) or "nothing") for pid, c in backend.captions.items()}


def caption_pairs(pairs: datasets.Dataset, backend, *, cache_path: str | Path | None = None,
                  progress: bool = False) -> dict[str, str]:
    """Pair id -> the backend's caption (the candidate instruction; "" where captioning failed, with
    the reason in `backend.stats`). The simulated teacher also writes what it injected to
    `teacher_injected.jsonl` beside the cache."""

    texts = backend.generate(pairs, prompt=INSTRUCTION_PROMPT, cache_path=cache_path, progress=progress)
    if isinstance(backend, teacher.SimulatedTeacher) and cache_path is not None:
        backend.write_injected(Path(cache_path).with_name("teacher_injected.jsonl"))
    return dict(zip(pairs["id"], texts))


# ----------------------------------------------------------------------------- 2 · score and filter

@dataclass
class FilterResult:
    """The scorer's verdict on every captioned pair and what the filter kept."""

    field: str
    threshold: float
    scored: list  # scorers.Scored, one per non-empty caption
    kept: list[str]  # ids with score >= threshold
    below: list[str]  # ids with score < threshold
    failed: dict[str, str]  # id -> why the scorer gave no score
    empty: list[str]  # ids whose caption was empty (never scored)

    def values(self, which: str = "all", field: str | None = None) -> list[float]:
        """One score field of the scored pairs: `all` of them or those `kept`."""
        keep = set(self.kept) if which == "kept" else None
        return [s.scores[field or self.field] for s in self.scored if s.ok and (keep is None or s.id in keep)]

    def summary(self) -> dict:
        return {"filter_field": self.field, "filter_threshold": self.threshold,
                "n_scored": sum(s.ok for s in self.scored), "n_kept": len(self.kept), "n_below": len(self.below),
                "n_score_failures": len(self.failed), "n_empty_captions": len(self.empty),
                "score_failures": dict(list(self.failed.items())[:20]),
                "scores_before": score_distribution(self, "all"), "scores_after": score_distribution(self, "kept")}


def score_and_filter(pairs: datasets.Dataset, candidates: Mapping[str, str], scorer, *, field: str = "overall",
                     threshold: float = 4.0, cache_path: str | Path | None = None,
                     progress: bool = False) -> FilterResult:
    """Score each non-empty caption and keep pairs whose `field` reaches `threshold` (the paper
    discards "composite < 4.0"). Empty captions and scorer failures are dropped and counted."""
    if field not in scorers.SCORE_FIELDS:
        raise ValueError(f"filter_field {field!r} is not a score field; expected one of {scorers.SCORE_FIELDS}")
    if not math.isfinite(threshold):
        raise ValueError(f"filter_threshold must be a finite number, got {threshold!r}")
    columns = [c for c in pairs.column_names if getattr(scorer, "needs_images", True)
               or c not in ("source_image", "target_image")]
    rows = pairs.select_columns(columns)
    empty = [pid for pid in rows["id"] if not candidates[pid].strip()]
    wanted = [i for i, pid in enumerate(rows["id"]) if candidates[pid].strip()]
    chosen = rows.select(wanted)
    scored = scorers.score_pairs(scorer, chosen, [candidates[pid] for pid in chosen["id"]], cache_path=cache_path,
                                 progress=progress)
    kept = [s.id for s in scored if s.ok and s.scores[field] >= threshold]
    below = [s.id for s in scored if s.ok and s.scores[field] < threshold]
    failed = {s.id: s.error for s in scored if not s.ok}
    return FilterResult(field, float(threshold), scored, kept, below, failed, empty)


def make_scorer(name: str, **editscore_params: Any):
    """`scorers.make_scorer` with the notebook's EditScore parameters, passed to `editscore` only."""
    return scorers.make_scorer(name, **(editscore_params if name == "editscore" else {}))


def score_distribution(result: FilterResult, which: str = "all") -> dict:
    """Per score field: n, mean, min, 10/50/90th percentile, max of `all` scored pairs or the `kept` ones."""
    import numpy as np

    out = {}
    for name in scorers.SCORE_FIELDS:
        values = np.asarray(result.values(which, name), dtype=float)
        if values.size == 0:
            out[name] = {"n": 0}
            continue
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        out[name] = {"n": int(values.size), "mean": float(values.mean()), "min": float(values.min()),
                     "p10": float(p10), "p50": float(p50), "p90": float(p90), "max": float(values.max())}
    return out


# ------------------------------------------------------------------------------- 3 · refinement

def export_refinement_sheet(pairs: datasets.Dataset, ids: Sequence[str], candidates: Mapping[str, str],
                            out_dir: str | Path) -> Path:
    """Write the refinement sheet (CSV, JSONL, Label Studio; images under images/) for the kept pairs.

    A sheet already in `out_dir` for exactly these ids and candidates is reused (it may hold a person's
    work); one for other rows is refused with the folder named."""
    out_dir = Path(out_dir)
    wanted = {pid: candidates[pid] for pid in ids}
    if annotation.sheet_already_exported(out_dir, "candidate_instruction", wanted,
                                       "a refinement sheet for other pairs or captions"):
        return out_dir
    keep = set(wanted)
    index = [i for i, pid in enumerate(pairs["id"]) if pid in keep]
    rows = pairs.select(index).select_columns(["id", "source_image", "target_image"])
    rows = rows.add_column("candidate_instruction", [wanted[pid] for pid in rows["id"]])
    annotation.export_sheet("refinement", rows, out_dir)
    return out_dir


def simulate_refinement(sheet_dir: str | Path, truth: Mapping[str, str], *, residual_error_rate: float, seed: int,
                        out_path: str | Path | None = None) -> Path:
    """SIMULATED ANNOTATOR: fill the sheet from `truth` (id -> the correct instruction; for synthetic
    pairs the reference instruction), leaving the candidate unchanged in a `residual_error_rate` share
    of rows, and write the filled file (CSV) as a person would hand it back."""
    sheet_dir = Path(sheet_dir)
    rows = annotation.read_sheet(sheet_dir / "sheet.jsonl")
    missing = [row["id"] for row in rows if not str(truth.get(row["id"], "")).strip()]
    if missing:
        raise records.RecordError(f"no reference instruction to simulate the refinement of {len(missing)} pairs "
                                  f"(first: {missing[0]}); set refinement_import_path to a filled sheet",
                                  file=sheet_dir / "sheet.jsonl", row=missing[0], field="instruction")
    filled = annotation.simulated_annotator("refinement", rows, truth=truth, residual_error_rate=residual_error_rate,
                                            seed=seed)
    return annotation.write_sheet("refinement", filled, out_path or sheet_dir / "filled_simulated.csv")


class FilledSheet(NamedTuple):
    path: Path
    annotator: str  # "human" for a person's file, "simulated" for the simulated annotator's


def filled_sheet(sheet_dir: str | Path, import_path: str = "", *, truth: Mapping[str, str],
                 residual_error_rate: float, seed: int) -> FilledSheet:
    """The filled sheet to import: a person's file at `import_path` when given, else the simulated
    annotator's (written next to the sheet). Says which one it is."""
    if import_path:
        path = Path(import_path)
        if not path.is_file():
            raise records.RecordError("refinement_import_path: no such file", file=path)
        print(f"importing the human refinement file {path}")
        return FilledSheet(path, HUMAN_ANNOTATOR)
    path = simulate_refinement(sheet_dir, truth, residual_error_rate=residual_error_rate, seed=seed)
    print(f"no refinement_import_path: the SIMULATED annotator filled {path} "
          f"(residual error rate {residual_error_rate:g})")
    return FilledSheet(path, SIMULATED_ANNOTATOR)


@dataclass
class Refinement:
    """The refined instruction per pair, from the newest import of one annotator."""

    instructions: dict[str, str]
    source: Path
    annotator: str
    n_read: int
    n_rejected: int
    missing: list[str]  # exported ids the file did not refine
    problems: list[str] = field(default_factory=list)  # rejected rows (file, row, field: message)

    def summary(self) -> dict:
        return {"source": str(self.source), "annotator": self.annotator, "n_read": self.n_read,
                "n_refined": len(self.instructions), "n_rejected": self.n_rejected, "n_missing": len(self.missing),
                "problems": self.problems[:20]}


def import_refinement(sheet_dir: str | Path, filled: FilledSheet | str | Path, *, store_dir: str | Path,
                      annotator: str = SIMULATED_ANNOTATOR) -> Refinement:
    """Import a filled refinement sheet (CSV, JSONL or a Label Studio export; a FilledSheet brings its
    annotator) into the versioned store; bad rows are reported and skipped. Returns the merged view of
    that annotator's imports."""
    path, annotator = (filled.path, filled.annotator) if isinstance(filled, FilledSheet) else (Path(filled), annotator)
    result = annotation.import_sheet("refinement", path, expected=Path(sheet_dir) / "sheet.jsonl",
                                     store_dir=store_dir, on_error="skip", annotator=annotator)
    merged = annotation.merged_view("refinement", store_dir, annotator=annotator)
    exported = {row["id"] for row in annotation.read_sheet(Path(sheet_dir) / "sheet.jsonl")}
    refined = {pid: row["refined_instruction"] for pid, row in merged.items() if pid in exported}
    return Refinement(refined, path, annotator, result.n_read, result.n_rejected,
                      sorted(exported - set(refined)), [str(e) for e in result.errors])


# ----------------------------------------------------------------------------------- 4 · SFT set

def build_sft_set(pairs: datasets.Dataset, instructions: Mapping[str, str], *, validation_fraction: float,
                  seed: int) -> datasets.DatasetDict:
    """TRL vision rows (`images` = [source, target], `prompt`, `completion`) plus id, edit_type and
    category for the pairs in `instructions`, split into train / validation by `seed`."""

    if not 0.0 <= validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in [0, 1), got {validation_fraction}")
    index = [i for i, pid in enumerate(pairs["id"]) if pid in instructions]
    if len(index) < 2:
        raise ValueError(f"only {len(index)} pairs reached the SFT set; an SFT set needs at least 2 "
                         "(lower filter_threshold or build more pairs)")
    raw = pairs.select(index).cast_column("source_image", datasets.Image(decode=False)).cast_column(
        "target_image", datasets.Image(decode=False))

    def convert(example):
        return build_sft_example(example["source_image"], example["target_image"], instructions[example["id"]])

    rows = raw.map(convert, remove_columns=[c for c in raw.column_names if c not in SFT_COLUMNS])
    rows = rows.cast_column("images", datasets.List(datasets.Image()))
    n_validation = min(len(rows) - 1, max(1, round(len(rows) * validation_fraction))) if validation_fraction else 0
    if not n_validation:
        return datasets.DatasetDict({"train": rows, "validation": rows.select([])})
    split = rows.train_test_split(test_size=n_validation, seed=seed, shuffle=True)
    return datasets.DatasetDict({"train": split["train"], "validation": split["test"]})


def save_sft_set(sft: datasets.DatasetDict, out_dir: str | Path) -> dict[str, Path]:
    """Save each split as its own `datasets` folder, out_dir/train and out_dir/validation, and as parquet beside
    it (out_dir/train.parquet, ...)."""
    return {name: records.save_dataset(split, Path(out_dir) / name) for name, split in sft.items()}


# --------------------------------------------------------------------------------- 5 · test split

def _image_hashes(pairs: datasets.Dataset) -> set[str]:
    raw = pairs.select_columns(["source_image", "target_image"]).cast_column(
        "source_image", datasets.Image(decode=False)).cast_column("target_image", datasets.Image(decode=False))
    return {hashlib.sha1(image["bytes"]).hexdigest() for column in ("source_image", "target_image")
            for image in raw[column] if image.get("bytes")}


def fresh_pairs(n: int, *, generator_seed: int, exclude: Mapping[str, datasets.Dataset], image_size: int = 128,
                layout: str = "grid", edit_types: str = "", max_objects: int = 0) -> tuple[datasets.Dataset, int]:
    """n synthetic pairs from `generator_seed` (of the comma-separated `edit_types`, at most `max_objects`
    objects), none sharing an id or an image with the `exclude` splits; returns them and how many generated
    pairs were left out for a shared id or image."""

    taken_ids = {pid for split in exclude.values() for pid in split["id"]}
    taken_images = set().union(*(_image_hashes(split) for split in exclude.values()))
    extra = max(4, n // 10)
    while True:
        pool = generate_pairs(n + extra, seed=generator_seed, size=image_size, layout=layout, progress=False,
                              edit_types=parse_edit_types(edit_types), max_objects=max_objects)
        raw = pool.cast_column("source_image", datasets.Image(decode=False)).cast_column(
            "target_image", datasets.Image(decode=False))
        fresh = [i for i, (pid, src, tgt) in enumerate(zip(raw["id"], raw["source_image"], raw["target_image"]))
                 if pid not in taken_ids and hashlib.sha1(src["bytes"]).hexdigest() not in taken_images
                 and hashlib.sha1(tgt["bytes"]).hexdigest() not in taken_images]
        if len(fresh) >= n:
            break
        extra *= 2
    pairs = pool.select(fresh[:n])
    check_no_overlap({"fresh": pairs, **exclude})
    return pairs, fresh[n - 1] + 1 - n


def build_test_pairs(n: int, *, seed: int, train_pairs: datasets.Dataset, image_size: int = 128,
                     layout: str = "grid", out_dir: str | Path | None = None, edit_types: str = "",
                     max_objects: int = 0) -> datasets.Dataset:
    """n synthetic pairs from the generator seed `seed + TEST_SEED_OFFSET` (their own ids and scenes),
    none sharing an id or an image with `train_pairs`; saved as edit pairs with full GT to `out_dir`."""
    if n < 1:
        raise ValueError(f"n_test_pairs must be >= 1, got {n}")
    test, _ = fresh_pairs(n, generator_seed=seed + TEST_SEED_OFFSET, exclude={"pairs": train_pairs},
                          image_size=image_size, layout=layout, edit_types=edit_types, max_objects=max_objects)
    if out_dir is not None:
        records.save_pairs(test, out_dir)
    return test


def check_no_overlap(splits: Mapping[str, datasets.Dataset]) -> None:
    """Raise if two splits share an id, or (for splits with pair images) an image."""
    seen_ids: dict[str, str] = {}
    seen_images: dict[str, str] = {}
    for name, split in splits.items():
        for pid in split["id"]:
            if pid in seen_ids and seen_ids[pid] != name:
                raise records.RecordError(f"id shared by splits '{seen_ids[pid]}' and '{name}'", row=pid, field="id")
            seen_ids[pid] = name
        if "source_image" in split.column_names:
            for digest in _image_hashes(split):
                if seen_images.get(digest, name) != name:
                    raise records.RecordError(f"an image is shared by splits '{seen_images[digest]}' and '{name}'",
                                              field="source_image")
                seen_images[digest] = name


# ----------------------------------------------------------------------------- measuring quality

def failure_modes(pairs: datasets.Dataset, instructions: Mapping[str, str]) -> dict:
    """Rule-judge measurement of instructions against their pairs' structured changes: the share with
    a P0 error, with no error, and with each failure mode (any severity / at P0). Pairs without
    `changes` cannot be measured and are counted in `n_unmeasured`; empty instructions count as P0."""

    judge = RuleJudge()
    changes = dict(zip(pairs["id"], pairs["changes"]))
    modes, modes_p0 = Counter(), Counter()
    n = p0 = clean = empty = unmeasured = 0
    for pid, text in instructions.items():
        if not changes.get(pid):
            unmeasured += 1
            continue
        n += 1
        if not text.strip():
            empty += 1
            p0 += 1
            continue
        errors = judge.score(changes[pid], text)["errors"]
        types = {e["type"] for e in errors}
        modes.update(types)
        modes_p0.update({e["type"] for e in errors if e["severity"] == "P0"})
        p0 += any(e["severity"] == "P0" for e in errors)
        clean += not errors
    share = (lambda k: k / n) if n else (lambda k: None)
    return {"n": n, "n_unmeasured": unmeasured, "n_empty": empty, "p0_share": share(p0), "clean_share": share(clean),
            "mode_share": {t: share(modes[t]) for t in ERROR_TYPES},
            "mode_p0_share": {t: share(modes_p0[t]) for t in ERROR_TYPES}}


def refinement_example_ids(pairs: datasets.Dataset, candidates: Mapping[str, str], refined: Mapping[str, str],
                           n: int) -> list[str]:
    """n refined pairs to show: those whose candidate the rule judge finds an error in first (what the
    refinement fixed), then the others, each in pair order."""

    judge = RuleJudge()
    flawed, fine = [], []
    for pid, changes in zip(pairs["id"], pairs["changes"]):
        if pid in refined:
            has_error = bool(changes and candidates[pid].strip() and judge.score(changes, candidates[pid])["errors"])
            (flawed if has_error else fine).append(pid)
        if len(flawed) >= n:
            break
    return (flawed + fine)[:n]


def failure_modes_by_stage(pairs: datasets.Dataset, candidates: Mapping[str, str], filtered: FilterResult,
                           sft: datasets.DatasetDict, refined: Refinement) -> dict[str, dict]:
    """`failure_modes` of the raw captions, of the captions the filter kept, and of the SFT set's
    (refined) instructions."""
    in_sft = [pid for split in sft.values() for pid in split["id"]]
    return {"raw captions": failure_modes(pairs, candidates),
            "after filter": failure_modes(pairs, {pid: candidates[pid] for pid in filtered.kept}),
            "after refinement": failure_modes(pairs, {pid: refined.instructions[pid] for pid in in_sft})}


def funnel(pairs: datasets.Dataset, filtered: FilterResult, refinement: Refinement,
           sft: datasets.DatasetDict) -> dict[str, int]:
    """Pairs left after each step, in order (the funnel plot's bars)."""
    return {"pairs": len(pairs), "captioned": len(pairs) - len(filtered.empty),
            "scored": sum(s.ok for s in filtered.scored), "kept by filter": len(filtered.kept),
            "refined": len(refinement.instructions), "SFT train": len(sft["train"]),
            "SFT validation": len(sft["validation"])}


# ------------------------------------------------------------------------------------- notebook 01's record

def caption_counts(captioning: dict) -> dict:
    """The captioning summary's counts: backend, model, pairs, cached, captioned, failed."""
    return {key: captioning[key] for key in ("backend", "model", "n", "n_cached", "n_ok", "n_failed")}


def filter_counts(filtered: FilterResult) -> dict:
    """The filter's summary without the score distributions."""
    return {key: value for key, value in filtered.summary().items() if not key.startswith("scores_")}


def p0_shares(stages: dict) -> dict:
    """Stage -> the share of its instructions with a P0 error (`failure_modes_by_stage`)."""
    return {stage: summary["p0_share"] for stage, summary in stages.items()}


def stage_metrics(*, summary: dict, pairs_source: str, world, caption_backend: str, captioning: dict, scorer: str,
                  counts: dict, filtered: FilterResult, refined, check: dict, stages: dict, sft, test_pairs,
                  subsets: dict) -> dict:
    """What notebook 01 writes to metrics.json: the pairs' distribution and world, each step's summary, the funnel."""
    return {**summary, "pairs_source": pairs_source, **world.pair_options, "edit_types": world.edit_types or "all",
            "caption_backend": caption_backend, "captioning": captioning, "scorer": scorer, "funnel": counts,
            "filter": filtered.summary(), "refinement": refined.summary(), "teacher": check, "failure_modes": stages,
            "p0_share": p0_shares(stages), "n_sft_train": len(sft["train"]), "n_sft_validation": len(sft["validation"]),
            "n_test_pairs": len(test_pairs), "targeted": subsets}
