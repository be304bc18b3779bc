"""The HAE-DPO preference set (paper §3.2 stage 2, §4.2): the SFT model's own failures as rejected answers,
their corrections as chosen answers, failure-mode and severity labels, balanced across the failure modes.

Each step is one function notebook 03 calls:
`candidate_pairs` (fresh synthetic pairs, disjoint from every other split) → `write_candidates` (the SFT
model's greedy answer and K samples per pair, or the SIMULATED teacher's one caption) → `mining.mine` (the rule
judge reads every candidate; pass@1 / pass@K per edit type; the rejected answer per pair) → `tagging_of` →
`export_correction_sheet` → (`simulated_chosen` + `simulate_corrections`, or a person's filled file) →
`import_corrections` → `chosen_provenance` (where each chosen answer came from, its edit distance to the
rejected one) → `balance` (over the failure modes that exist) → `build_preference_set` /
`save_preference_set` (rows of `records.PREFERENCE_FEATURES`, read back through
`preference_rows.load_preferences`, as the trainer reads them).
"""
from __future__ import annotations

import math
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import datasets
import pandas as pd

from editcaption import annotation, paths, records
from editcaption.data import answer_shape, construct, correction, mining
from editcaption.data.preference_rows import load_preferences
from editcaption.prompts import INSTRUCTION_PROMPT

PREFERENCE_SEED_OFFSET = 2_000_000  # the candidate pool's generator seed is seed + this (the test split: + 1_000_000)
REJECTED_SOURCES = ("sft-model", "simulated-teacher")
MODES = records.ERROR_TYPES  # orientation, viewpoint, detail
PAPER_MIX = {"orientation": 0.342, "viewpoint": 0.315, "detail": 0.343}  # §4.2


# ---------------------------------------------------------------------------------- 1 · candidates

def candidate_pairs(n: int, *, seed: int, exclude: Mapping[str, datasets.Dataset], image_size: int = 128,
                    layout: str = "grid", out_dir: str | Path | None = None, edit_types: str = "",
                    max_objects: int = 0) -> tuple[datasets.Dataset, int]:
    """n synthetic pairs (in notebook 01's world: `edit_types`, `max_objects`) from the generator seed
    `seed + PREFERENCE_SEED_OFFSET`, none sharing an id or an image with the `exclude` splits (the SFT pool,
    the test split, the targeted subsets); returns them and how many generated pairs were left out for a
    shared image. Saved as edit pairs to `out_dir`."""
    if n < 1:
        raise ValueError(f"n_candidate_pairs must be >= 1, got {n}")
    pairs, n_left_out = construct.fresh_pairs(n, generator_seed=seed + PREFERENCE_SEED_OFFSET, exclude=exclude,
                                              image_size=image_size, layout=layout, edit_types=edit_types,
                                              max_objects=max_objects)
    if out_dir is not None:
        records.save_pairs(pairs, out_dir)
    return pairs, n_left_out


def write_candidates(rejected_source: str, pairs: datasets.Dataset, *, sft_model: str = "", k: int = 0,
                     temperature: float = 1.0, top_p: float = 1.0, seed: int = 0, batch_size: int = 16,
                     max_new_tokens: int = 48, teacher_rates: Mapping[str, float] | None = None,
                     cache_dir: str | Path | None = None) -> tuple[dict[str, list[str]], dict]:
    """id -> candidates and the generation stats: the SFT model's greedy answer and `k` samples
    (`mining.sample_candidates`, as the paper mines the trained model's failures), or the SIMULATED teacher's
    one caption per pair. Cached under `cache_dir`."""
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
    if rejected_source == "sft-model":
        if not sft_model:
            raise ValueError("rejected_source 'sft-model' needs the SFT model (run notebook 02 or set sft_model_path)")
        return mining.sample_candidates(pairs, sft_model, k=k, temperature=temperature, top_p=top_p, seed=seed,
                                        batch_size=batch_size, max_new_tokens=max_new_tokens, cache_dir=cache_dir)
    if rejected_source == "simulated-teacher":
        backend = construct.caption_backend("simulated-teacher", seed=seed, teacher_rates=teacher_rates)
        texts = construct.caption_pairs(pairs, backend, cache_path=cache_dir / "teacher.jsonl" if cache_dir else None)
        return {pid: [text] for pid, text in texts.items()}, {"teacher": construct.caption_summary(backend)}
    raise ValueError(f"rejected_source {rejected_source!r} is not one of {REJECTED_SOURCES}")


# ------------------------------------------------------------------------------------- 2 · tagging

@dataclass
class Tagging:
    """One verdict per pair: the rejected ones with their primary mode and severity, and what the rest were."""

    rejected: dict[str, tuple[str, str]]  # id -> (error_type, severity) of the rejected answer's worst error
    clean: list[str]  # no rejected answer, some candidate without error
    other: list[str]  # worst error is "other" (content no change supports): dropped
    off_topic: list[str]  # names no change at all (e.g. an untrained model's "."): no failure mode to learn
    empty: list[str]  # no text (a failed or empty generation)
    reasons: dict[str, list[str]] = field(default_factory=dict)  # id -> the judge's reasons, worst first
    texts: dict[str, str] = field(default_factory=dict)  # id -> the rejected answer
    origin: dict[str, str] = field(default_factory=dict)  # id -> which candidate it was (greedy, sample j)

    def summary(self) -> dict:
        n = len(self.rejected) + len(self.clean) + len(self.other) + len(self.off_topic) + len(self.empty)
        return {"n_pairs": n, "n_empty": len(self.empty), "n_clean": len(self.clean),
                "n_other_dropped": len(self.other), "n_off_topic_dropped": len(self.off_topic),
                "n_rejected": len(self.rejected),
                "rejected_from": dict(Counter("greedy" if o == mining.GREEDY else "sample" for o in self.origin.values())),
                "rejected_modes": dict(Counter(t for t, _ in self.rejected.values())),
                "rejected_severities": dict(Counter(s for _, s in self.rejected.values()))}


def tagging_of(mined: mining.Mining, rejected_from: str = "greedy") -> Tagging:
    """Per pair: its rejected answer (`Mining.rejected`: the greedy one when it fails; with "greedy-or-sample"
    else the first failing sample) with the judge's labels, or the kind of pair it is without one."""
    tagging = Tagging({}, [], [], [], [])
    picked = mined.rejected(rejected_from)
    for pid in mined.ids:
        if pid in picked:
            verdict = mined.verdicts[pid][picked[pid]]
            tagging.rejected[pid] = (verdict.error_type, verdict.severity)
            tagging.reasons[pid] = list(verdict.reasons)
            tagging.texts[pid] = mined.candidates[pid][picked[pid]]
            tagging.origin[pid] = mined.name(picked[pid])
        else:
            {"clean": tagging.clean, "other": tagging.other, "off_topic": tagging.off_topic,
             "empty": tagging.empty}[mined.pair_kind(pid, rejected_from)].append(pid)
    return tagging


def tag_candidates(pairs: datasets.Dataset, candidates: Mapping[str, str]) -> Tagging:
    """`tagging_of` for one candidate per pair: a candidate whose worst error is orientation, viewpoint or
    detail becomes a rejected answer labelled with that error's type and severity. Candidates without error,
    with "other" as their worst error, naming no change at all (every failure-mode error an omission), or
    empty are counted and left out."""
    return tagging_of(mining.mine(pairs, {pid: [text] for pid, text in candidates.items()}))


# ------------------------------------------------------------------------------- 3 · corrections

def export_correction_sheet(pairs: datasets.Dataset, candidates: Mapping[str, str], ids: Sequence[str],
                            out_dir: str | Path) -> Path:
    """Write the correction sheet (CSV, JSONL, Label Studio; images under images/) for the rejected `ids`.
    A sheet already there for exactly these rows is reused (it may hold a person's work); one for other
    rows is refused with the folder named."""
    out_dir = Path(out_dir)
    wanted = {pid: candidates[pid] for pid in ids}
    if annotation.sheet_already_exported(out_dir, "rejected_instruction", wanted,
                                       "a correction sheet for other candidates"):
        return out_dir
    index = [i for i, pid in enumerate(pairs["id"]) if pid in wanted]
    rows = pairs.select(index).select_columns(["id", "source_image", "target_image"])
    rows = rows.add_column("rejected_instruction", [wanted[pid] for pid in rows["id"]])
    annotation.export_sheet("correction", rows, out_dir)
    return out_dir


def simulate_corrections(sheet_dir: str | Path, truth: Mapping[str, tuple[str, str, str]], *,
                         residual_error_rate: float, seed: int) -> Path:
    """SIMULATED ANNOTATOR: fill the correction sheet from `truth` (id -> (corrected instruction, error_type,
    severity)); in a `residual_error_rate` share of rows one label is wrong. Writes the filled CSV."""
    sheet_dir = Path(sheet_dir)
    rows = annotation.read_sheet(sheet_dir / "sheet.jsonl")
    filled = annotation.simulated_annotator("correction", rows, truth=truth, residual_error_rate=residual_error_rate,
                                            seed=seed)
    return annotation.write_sheet("correction", filled, sheet_dir / "filled_simulated.csv")


def filled_correction_sheet(sheet_dir: str | Path, import_path: str = "", *, truth: Mapping[str, tuple[str, str, str]],
                            residual_error_rate: float, seed: int) -> construct.FilledSheet:
    """A person's filled file at `import_path` when given, else the simulated annotator's; says which."""
    if import_path:
        path = Path(import_path)
        if not path.is_file():
            raise records.RecordError("correction_import_path: no such file", file=path)
        print(f"importing the human correction file {path}")
        return construct.FilledSheet(path, construct.HUMAN_ANNOTATOR)
    path = simulate_corrections(sheet_dir, truth, residual_error_rate=residual_error_rate, seed=seed)
    print(f"no correction_import_path: the SIMULATED annotator filled {path} "
          f"(residual error rate {residual_error_rate:g})")
    return construct.FilledSheet(path, construct.SIMULATED_ANNOTATOR)


def simulated_chosen(pairs: datasets.Dataset, tagging: Tagging,
                     mined: mining.Mining | None = None) -> dict[str, correction.ChosenAnswer]:
    """What the SIMULATED annotator writes as the chosen answer of each rejected one: the corrector's minimal
    correction, else a clean candidate of the same pair, else the pair's reference instruction
    (`correction.choose_answers`)."""
    meta = pairs.select_columns(["id", "changes", "instruction"])
    return correction.choose_answers(dict(zip(meta["id"], meta["changes"])), tagging.texts,
                                     mined.clean_alternatives() if mined is not None else {},
                                     dict(zip(meta["id"], meta["instruction"])))


def correction_truth(chosen: Mapping[str, correction.ChosenAnswer], tagging: Tagging) -> dict[str, tuple[str, str, str]]:
    """The simulated annotator's sheet: id -> (chosen answer, the judge's error type, severity)."""
    missing = sorted(set(tagging.rejected) - set(chosen))
    if missing:
        raise records.RecordError(f"no chosen answer for {len(missing)} rejected candidates", row=missing[0],
                                  field="corrected_instruction")
    return {pid: (chosen[pid].text, *labels) for pid, labels in tagging.rejected.items()}


@dataclass
class Corrections:
    """The newest correction of each rejected candidate by one annotator: chosen text and labels."""

    rows: dict[str, dict]  # id -> {rejected_instruction, corrected_instruction, error_type, severity, ...}
    source: Path
    annotator: str
    n_read: int
    n_rejected: int
    missing: list[str]
    problems: list[str] = field(default_factory=list)

    def labels(self) -> dict[str, str]:
        return {pid: row["error_type"] for pid, row in self.rows.items()}

    def summary(self) -> dict:
        return {"source": str(self.source), "annotator": self.annotator, "n_read": self.n_read,
                "n_corrected": len(self.rows), "n_rejected": self.n_rejected, "n_missing": len(self.missing),
                "problems": self.problems[:20]}


def import_corrections(sheet_dir: str | Path, filled: construct.FilledSheet, *, store_dir: str | Path) -> Corrections:
    """Import a filled correction sheet (CSV, JSONL or Label Studio export) as a new version; bad rows are
    reported and skipped. Returns the merged view of that annotator's imports for the exported rows."""
    sheet = Path(sheet_dir) / "sheet.jsonl"
    result = annotation.import_sheet("correction", filled.path, expected=sheet, store_dir=store_dir,
                                     on_error="skip", annotator=filled.annotator)
    merged = annotation.merged_view("correction", store_dir, annotator=filled.annotator)
    exported = {row["id"]: row["rejected_instruction"] for row in annotation.read_sheet(sheet)}
    rows = {pid: row for pid, row in merged.items() if exported.get(pid) == row["rejected_instruction"]}
    return Corrections(rows, filled.path, filled.annotator, result.n_read, result.n_rejected,
                       sorted(set(exported) - set(rows)), [str(e) for e in result.errors])


def chosen_provenance(corrections: Corrections, tagging: Tagging,
                      chosen: Mapping[str, correction.ChosenAnswer]) -> pd.DataFrame:
    """One row per corrected pair: its labels, which candidate was rejected, where the chosen answer came from
    (the simulated annotator's `correction` / `clean-sample` / `reference`, or `human` for a person's text) and
    the token edit distance between chosen and rejected."""
    rows = []
    for pid, row in sorted(corrections.rows.items()):
        simulated = chosen.get(pid)
        source = simulated.source if simulated is not None and simulated.text == row["corrected_instruction"] else "human"
        rows.append({"id": pid, "error_type": row["error_type"], "severity": row["severity"],
                     "rejected_from": tagging.origin.get(pid, ""), "chosen_source": source,
                     "edit_distance": correction.token_edit_distance(row["rejected_instruction"],
                                                                     row["corrected_instruction"])})
    return pd.DataFrame(rows, columns=["id", "error_type", "severity", "rejected_from", "chosen_source", "edit_distance"])


def distance_summary(provenance: pd.DataFrame) -> dict:
    """Chosen answers per source, and the edit distance's distribution (overall and per source and mode)."""
    def describe(values: pd.Series) -> dict:
        return {"n": int(len(values)), "mean": float(values.mean()), "median": float(values.median()),
                "p90": float(values.quantile(0.9)), "max": int(values.max())} if len(values) else {"n": 0}

    distances = provenance["edit_distance"]
    return {"chosen_sources": provenance["chosen_source"].value_counts().to_dict(), "all": describe(distances),
            "by_source": {k: describe(g["edit_distance"]) for k, g in provenance.groupby("chosen_source")},
            "by_mode": {k: describe(g["edit_distance"]) for k, g in provenance.groupby("error_type")},
            "histogram": {int(k): int(v) for k, v in distances.value_counts().sort_index().items()}}


# ------------------------------------------------------------------------------ 3b · answer shape

def shape_of_corrections(corrections: Corrections) -> pd.DataFrame:
    """Per corrected pair: chosen − rejected in words and edit clauses (`answer_shape.shape_deltas`)."""
    return answer_shape.shape_deltas([{"id": pid, "error_type": row["error_type"], "chosen": row["corrected_instruction"],
                                       "rejected": row["rejected_instruction"]} for pid, row in sorted(corrections.rows.items())])


def joining_form_table(corrections: Corrections, sft_pool: datasets.Dataset) -> pd.DataFrame:
    """Share of texts using each joining form: the SFT pool's reference instructions (the SFT targets), the
    chosen and the rejected answers."""
    rows = corrections.rows.values()
    return answer_shape.form_shares({"sft targets": sft_pool["instruction"],
                                     "chosen": [r["corrected_instruction"] for r in rows],
                                     "rejected": [r["rejected_instruction"] for r in rows]})


def length_balanced(corrections: Corrections, ids: Sequence[str]) -> Corrections:
    """`corrections` with only the rows of `ids` (the pairs `answer_shape.balance_lengths` kept)."""
    keep = set(ids)
    return Corrections({pid: row for pid, row in corrections.rows.items() if pid in keep}, corrections.source,
                       corrections.annotator, corrections.n_read, corrections.n_rejected, corrections.missing,
                       corrections.problems)


# -------------------------------------------------------------------------------------- 4 · mix

@dataclass
class Balance:
    """Rows picked per mode for the target mix, and what fell short."""

    selected: list[str]
    target: dict[str, int]
    available: dict[str, int]
    taken: dict[str, int]
    shortfall: dict[str, int]
    mix: dict[str, float]

    def achieved_mix(self) -> dict[str, float | None]:
        total = sum(self.taken.values())
        return {m: (k / total if total else None) for m, k in self.taken.items()}

    def summary(self) -> dict:
        return {"n_target": sum(self.target.values()), "n_selected": len(self.selected), "target": self.target,
                "available": self.available, "taken": self.taken, "shortfall": self.shortfall,
                "target_mix": self.mix, "achieved_mix": self.achieved_mix()}


def _quotas(n: int, shares: Mapping[str, float]) -> dict[str, int]:
    """n split by shares, rounded by largest remainder (the quotas sum to n)."""
    exact = {m: n * s for m, s in shares.items()}
    quotas = {m: math.floor(v) for m, v in exact.items()}
    for m in sorted(exact, key=lambda m: (quotas[m] - exact[m], list(exact).index(m)))[:n - sum(quotas.values())]:
        quotas[m] += 1
    return quotas


def balance(labels: Mapping[str, str], mix: Mapping[str, float], *, n_total: int = 0, seed: int = 0,
            min_mode_rows: int = 1) -> Balance:
    """Pick rows per failure mode so the set follows `mix` (shares, normalised) over the modes that exist:
    a mode with fewer than `min_mode_rows` rows keeps all it has and does not limit the others. n_total = 0
    takes the largest set whose quotas every existing mode can fill; n_total > 0 aims at that many rows. Each
    mode's shortfall against its quota is reported; no mode is topped up from another. Rows are drawn by
    `seed`; ids come back sorted."""
    unknown = sorted(set(mix) - set(MODES))
    if unknown or any(v < 0 or not math.isfinite(v) for v in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix must give non-negative shares of {MODES} with a positive sum, got {dict(mix)}")
    if n_total < 0:
        raise ValueError(f"n_preference must be >= 0, got {n_total}")
    if min_mode_rows < 1:
        raise ValueError(f"min_mode_rows must be >= 1, got {min_mode_rows}")
    total = sum(mix.values())
    shares = {m: mix.get(m, 0.0) / total for m in MODES}
    by_mode = {m: sorted(pid for pid, t in labels.items() if t == m) for m in MODES}
    available = {m: len(ids) for m, ids in by_mode.items()}
    existing = [m for m in MODES if shares[m] > 0 and available[m] >= min_mode_rows]
    if not n_total:
        if not existing:
            raise ValueError(f"no failure mode has {min_mode_rows} or more rejected rows (available: {available})")
        n_total = min(math.floor(available[m] / shares[m] + 1e-9) for m in existing)
    target = _quotas(n_total, shares)
    taken = {m: min(target[m], available[m]) for m in MODES}
    rng = random.Random(seed)
    selected = sorted(pid for m in MODES for pid in rng.sample(by_mode[m], taken[m]))
    return Balance(selected, target, available, taken, {m: target[m] - taken[m] for m in MODES}, shares)


# ------------------------------------------------------------------------------ 5 · preference set

def build_preference_set(pairs: datasets.Dataset, corrections: Corrections, ids: Sequence[str]) -> datasets.Dataset:
    """One row of `records.PREFERENCE_FEATURES` per id: images [source, target], the instruction prompt, the
    correction as chosen, the candidate as rejected, and the annotator's error type and severity."""

    wanted = set(ids)
    if not wanted:
        raise ValueError("no preference rows to write (no rejected candidate was corrected and kept)")
    raw = pairs.cast_column("source_image", datasets.Image(decode=False)).cast_column(
        "target_image", datasets.Image(decode=False))
    rows = []
    for row in raw.select([i for i, pid in enumerate(raw["id"]) if pid in wanted]):
        fix = corrections.rows[row["id"]]
        preference = {"id": row["id"], "images": [row["source_image"], row["target_image"]],
                      "prompt": INSTRUCTION_PROMPT, "chosen": fix["corrected_instruction"],
                      "rejected": fix["rejected_instruction"], "error_type": fix["error_type"],
                      "severity": fix["severity"]}
        records.validate_preference(preference, index=len(rows))
        rows.append(preference)
    return datasets.Dataset.from_list(rows, features=records.PREFERENCE_FEATURES)


def save_preference_set(preferences: datasets.Dataset, out_dir: str | Path) -> Path:
    """Save as a `datasets` folder (and `<out_dir>.parquet` beside it) and read it back through
    `preference_rows.load_preferences` (the trainer's check)."""
    out_dir = records.save_dataset(preferences, out_dir)
    load_preferences(out_dir)
    return out_dir


def mode_severity_counts(preferences: datasets.Dataset):
    """Rows per failure mode (index) and severity (columns), with totals."""
    import pandas as pd

    table = pd.crosstab(pd.Categorical(preferences["error_type"], categories=MODES),
                        pd.Categorical(preferences["severity"], categories=records.SEVERITIES), dropna=False)
    table.index.name, table.columns.name = "error_type", "severity"
    return table


def preference_example_ids(preferences: datasets.Dataset, per_mode: int = 1) -> list[str]:
    """Up to `per_mode` ids of each failure mode, in the set's order."""
    picked: dict[str, list[str]] = {m: [] for m in MODES}
    for pid, mode in zip(preferences["id"], preferences["error_type"]):
        if len(picked[mode]) < per_mode:
            picked[mode].append(pid)
    return [pid for m in MODES for pid in picked[m]]


def upstream_splits(run_name: str, output_root: str | Path = "outputs") -> dict[str, datasets.Dataset]:
    """Every split notebook 01 wrote for this run (the SFT pool, the test split, each targeted subset): what a
    fresh candidate pool must share no id and no image with."""

    splits = {"sft pool": records.load_pairs(paths.upstream("", run_name, "01_dataset_construction", "pairs", output_root)),
              "test": records.load_pairs(paths.upstream("", run_name, "01_dataset_construction", "test_pairs",
                                                        output_root))}
    targeted = paths.stage_dir(run_name, "01_dataset_construction", output_root) / "targeted"
    for folder in sorted(p for p in targeted.glob("*/*") if p.is_dir()):
        splits[f"targeted {folder.parent.name} {folder.name}"] = records.load_pairs(folder)
    return splits


# ------------------------------------------------------------------------------------- notebook 03's record

def rejected_source_model(rejected_source: str, sft_model_path: str, run_name: str,
                          output_root: str | Path = "outputs") -> str:
    """The SFT checkpoint that writes the candidates when `rejected_source` is "sft-model"; "" for the teacher."""
    return paths.sft_model(sft_model_path, run_name, output_root) if rejected_source == "sft-model" else ""


def distance_overview(distances: dict) -> dict:
    """What notebook 03 shows of `distance_summary`: chosen answers per source, the overall and per-mode distances."""
    return {key: distances[key] for key in ("chosen_sources", "all", "by_mode")}


def stage_metrics(*, rejected_source: str, sft_model: str, generation: dict, mined, pass_rates: pd.DataFrame,
                  headroom: dict, tagging, pairs, n_left_out: int, corrections, balanced, preferences, distances: dict,
                  counts: pd.DataFrame, preference_dir, rejected_from: str = "greedy", forms: pd.DataFrame | None = None,
                  lengths: answer_shape.LengthBalance | None = None) -> dict:
    """What notebook 03 writes to metrics.json: each step's summary, the row counts along the way, the mix, the
    joining forms of targets, chosen and rejected answers, and the length balance (chosen − rejected by mode)."""
    return {"rejected_source": rejected_source, "sft_model": sft_model, "generation": generation,
            "rejected_from": rejected_from,
            "mining": mined.summary(rejected_from), "pass_rates": pass_rates.to_dict(orient="index"),
            "headroom": headroom, "tagging": tagging.summary(),
            "counts": {"candidate_pairs": len(pairs), "pool_left_out": n_left_out, "rejected": len(tagging.rejected),
                       "corrected": len(corrections.rows),
                       "length_balanced": len(lengths.kept) if lengths is not None else len(corrections.rows),
                       "balanced": len(balanced.selected), "preference_rows": len(preferences)},
            "joining_forms": forms.to_dict() if forms is not None else {},
            "foreign_forms": answer_shape.foreign_forms(forms, "chosen", "sft targets") if forms is not None else [],
            "length_balance": lengths.summary() if lengths is not None else {},
            "correction": corrections.summary(), "chosen": distances, "balance": balanced.summary(),
            "achieved_mix": balanced.achieved_mix(), "shortfall": balanced.shortfall,
            "severity_counts": counts.sum(axis=0).to_dict(), "mode_severity_counts": counts.to_dict(orient="index"),
            "preference_data_path": str(preference_dir)}
