"""On-policy failure mining (paper §4.2): the SFT model's own failed instructions become rejected answers.

The paper generates with the SFT model for 30K fresh pairs and keeps the outputs that show a failure mode.
Here the SFT model writes, for every fresh pair, its greedy instruction (what it answers at test time) and K
sampled ones (temperature, top-p, seeded, batched; cached so a rerun re-pays nothing), and the rule judge
reads every candidate:

- `clean`: no error; `rejected`: the worst error is orientation, viewpoint or detail (its type and
  severity are the labels; an edit the pair does not show, a repeat or a no-op is a detail or viewpoint error
  too, so its correction deletes a clause); `other`: about an object no change touches; `off_topic`: names
  no change at all (every failure-mode error an omission); `empty`: no text.

pass@1 and pass@K per edit type tell where preference training can help at all: DPO shifts probability
between answers the model already writes, so it can only fix an edit type whose pass@K (some sample is
right) is well above its pass@1. Pairs whose one primary change is a move are also split by the move's axis
("move left/right", "move up/down"): a model may see one axis and swap or miss the other. Per pair the
rejected answer is the greedy one when it fails (what is evaluated); `rejected_from="greedy-or-sample"` also
takes the first failing sample of a pair whose greedy answer is clean (`Mining.rejected`).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import datasets
import pandas as pd

from editcaption import records
from editcaption.generation import TransformersBackend
from editcaption.world.rule_judge import RuleJudge

MODES = records.ERROR_TYPES  # orientation, viewpoint, detail
KINDS = ("clean", "rejected", "other", "off_topic", "empty")
GREEDY = "greedy"
REJECTED_FROM = ("greedy", "greedy-or-sample")  # where rejected answers come from (notebook 03's rejected_from)
MOVE_AXES = {"move left/right": ("left", "right"), "move up/down": ("up", "down")}  # pass-rate row -> directions


@dataclass(frozen=True)
class Verdict:
    """The rule judge's reading of one candidate."""

    kind: str  # one of KINDS
    error_type: str = ""  # the worst error's type ("" for a clean or empty candidate)
    severity: str = ""
    p0: bool = False  # any P0 error
    reasons: tuple[str, ...] = ()  # "type severity: reason", worst first


def judge_candidate(judge: RuleJudge, changes: Sequence[Mapping], text: str) -> Verdict:
    """Classify one candidate instruction against its pair's changes (see the module docstring)."""
    if not text or not text.strip():
        return Verdict("empty")
    result = judge.score(changes, text)
    errors = result["errors"]
    reasons = tuple(f"{e['type']} {e['severity']}: {e['reason']}" for e in errors)
    p0 = any(e["severity"] == "P0" for e in errors)
    if not errors:
        return Verdict("clean")
    if not result["hits"] and all(e["reason"].endswith(" not described") for e in errors if e["type"] in MODES):
        kind = "off_topic"
    elif result["error_type"] not in MODES:
        kind = "other"
    else:
        kind = "rejected"
    return Verdict(kind, result["error_type"], result["severity"], p0, reasons)


def _repeated(pairs: datasets.Dataset, k: int) -> datasets.Dataset:
    """Each pair k times, with ids `<id>#<j>` (j = 1..k): the rows the sampler captions."""
    ids = [f"{pid}#{j}" for pid in pairs["id"] for j in range(1, k + 1)]
    rows = pairs.select_columns(["id", "source_image", "target_image"]).select(
        [i for i in range(len(pairs)) for _ in range(k)])
    return rows.remove_columns("id").add_column("id", ids)


def sample_candidates(pairs: datasets.Dataset, model: str | Path, *, k: int, temperature: float, top_p: float,
                      seed: int, batch_size: int, max_new_tokens: int, cache_dir: str | Path | None = None,
                      progress: bool = True) -> tuple[dict[str, list[str]], dict]:
    """id -> [greedy, sample 1, ..., sample k] from the model (transformers backend), and generation stats.
    Sampled batches are seeded with `seed`: the same pairs, settings and batch size give the same samples."""

    if k < 0:
        raise ValueError(f"mining_k must be >= 0, got {k}")
    if k and (not temperature > 0 or not 0 < top_p <= 1):
        raise ValueError(f"sampling needs temperature > 0 and 0 < top_p <= 1, got {temperature} and {top_p}")
    cache_dir = Path(cache_dir) if cache_dir is not None else None
    greedy = TransformersBackend(str(model), batch_size=batch_size, max_new_tokens=max_new_tokens)
    texts = greedy.generate(pairs, cache_path=cache_dir / "greedy.jsonl" if cache_dir else None, progress=progress)
    out = {pid: [text] for pid, text in zip(pairs["id"], texts)}
    stats = {"greedy": dict(greedy.stats)}
    if k:
        sampler = TransformersBackend(str(model), batch_size=batch_size, max_new_tokens=max_new_tokens,
                                      do_sample=True, temperature=temperature, top_p=top_p, seed=seed)
        rows = _repeated(pairs, k)
        sampled = sampler.generate(rows, cache_path=cache_dir / "samples.jsonl" if cache_dir else None,
                                   progress=progress)
        for row_id, text in zip(rows["id"], sampled):
            out[row_id.rsplit("#", 1)[0]].append(text)
        stats["samples"] = dict(sampler.stats)
    for part in stats.values():
        part.pop("failures", None)
    return out, stats


def move_axis(changes: Sequence[Mapping]) -> str:
    """The pass-rate row of a pair's move axis (a key of MOVE_AXES) when its one primary change is a move along
    it, else "" (no move, or a move among other primary changes, whose failures may come from the others)."""
    primary = [c for c in changes if c.get("primary", True)]
    if len(primary) != 1 or primary[0].get("op") != "move":
        return ""
    return next((axis for axis, words in MOVE_AXES.items() if primary[0].get("direction") in words), "")


@dataclass
class Mining:
    """Every candidate of every pair with its verdict; the rejected pick and the pass rates derive from it."""

    ids: list[str]
    edit_types: dict[str, str]  # id -> edit type
    candidates: dict[str, list[str]]  # id -> [greedy or the one candidate, sample 1, ..., sample K]
    verdicts: dict[str, list[Verdict]]
    n_samples: int  # K (0: one candidate per pair, as from the simulated teacher)
    move_axes: dict[str, str] = field(default_factory=dict)  # id -> `move_axis` of its changes ("" or absent: none)

    def name(self, index: int) -> str:
        return GREEDY if index == 0 else f"sample {index}"

    def rejected(self, rejected_from: str = "greedy") -> dict[str, int]:
        """id -> index of its rejected answer: the greedy candidate when it fails (what is evaluated, so what
        preference training should fix); with `rejected_from` "greedy-or-sample", else the first failing sample."""
        if rejected_from not in REJECTED_FROM:
            raise ValueError(f"rejected_from must be one of {REJECTED_FROM}, got {rejected_from!r}")
        last = 1 if rejected_from == "greedy" else None
        picked = {}
        for pid in self.ids:
            index = next((i for i, v in enumerate(self.verdicts[pid][:last]) if v.kind == "rejected"), None)
            if index is not None:
                picked[pid] = index
        return picked

    def clean_alternatives(self) -> dict[str, list[str]]:
        """id -> its distinct clean candidates (greedy first): chosen answers when a correction fails."""
        return {pid: list(dict.fromkeys(t for t, v in zip(self.candidates[pid], self.verdicts[pid])
                                        if v.kind == "clean")) for pid in self.ids}

    def pair_kind(self, pid: str, rejected_from: str = "greedy") -> str:
        """One kind per pair: rejected if a candidate `rejected_from` may take fails with a mode (as `rejected`),
        else the best other kind."""
        if rejected_from not in REJECTED_FROM:
            raise ValueError(f"rejected_from must be one of {REJECTED_FROM}, got {rejected_from!r}")
        kinds = {v.kind for v in self.verdicts[pid]}
        if rejected_from == "greedy" and self.verdicts[pid][0].kind != "rejected":
            kinds.discard("rejected")
        return next(kind for kind in ("rejected", "clean", "other", "off_topic", "empty") if kind in kinds)

    def pass_rates(self) -> pd.DataFrame:
        """Per edit type (and "all"): pairs, greedy pass rate, pass@1 and pass@K over the K samples, where
        "pass" means no P0 error (`_p0` columns) or no error at all (`_correct` columns). pass@1 is the mean
        share of passing samples (the unbiased estimate with n = K), pass@K the share of pairs with at least one.
        After the edit types' rows (after "move" when it is one), a row per move axis that has pairs ("move
        left/right", "move up/down": the pairs whose one primary change is a move along it, `move_axis`)."""
        rows = []
        for pid in self.ids:
            verdicts = self.verdicts[pid]
            samples = verdicts[1:]
            row = {"edit_type": self.edit_types[pid], "greedy_p0": not verdicts[0].p0 and verdicts[0].kind != "empty",
                   "greedy_correct": verdicts[0].kind == "clean"}
            for tag, ok in (("p0", lambda v: not v.p0 and v.kind != "empty"), ("correct", lambda v: v.kind == "clean")):
                passed = [ok(v) for v in samples]
                row[f"pass@1_{tag}"] = sum(passed) / len(passed) if passed else float("nan")
                row[f"pass@K_{tag}"] = float(any(passed)) if passed else float("nan")
            rows.append(row)
        frame = pd.DataFrame(rows)
        axes = pd.Series([self.move_axes.get(pid, "") for pid in self.ids], index=frame.index)
        table = frame.groupby("edit_type").mean()
        table.insert(0, "pairs", frame.groupby("edit_type").size().astype(int))
        by_axis = pd.DataFrame({axis: {"pairs": int((axes == axis).sum()),
                                       **frame[axes == axis].drop(columns="edit_type").mean()}
                                for axis in MOVE_AXES if (axes == axis).any()}).T
        after = list(table.index).index("move") + 1 if "move" in table.index else len(table)
        table = pd.concat([table.iloc[:after], by_axis, table.iloc[after:]])
        table.loc["all"] = [len(frame), *frame.drop(columns="edit_type").mean()]
        table["pairs"] = table["pairs"].astype(int)
        table.index.name = "edit_type"
        return table

    def summary(self, rejected_from: str = "greedy") -> dict:
        picked = self.rejected(rejected_from)
        kinds = Counter(self.pair_kind(pid, rejected_from) for pid in self.ids)
        labels = [self.verdicts[pid][i] for pid, i in picked.items()]
        return {"n_pairs": len(self.ids), "n_samples": self.n_samples,
                "n_candidates": sum(len(c) for c in self.candidates.values()),
                "candidate_kinds": dict(Counter(v.kind for vs in self.verdicts.values() for v in vs)),
                "pair_kinds": {kind: kinds.get(kind, 0) for kind in KINDS},
                "n_rejected": len(picked),
                "rejected_from": dict(Counter(self.name(i) if i == 0 else "sample" for i in picked.values())),
                "rejected_modes": dict(Counter(v.error_type for v in labels)),
                "rejected_severities": dict(Counter(v.severity for v in labels))}


def mine(pairs: datasets.Dataset | Mapping[str, list], candidates: Mapping[str, Sequence[str]], *,
         judge: RuleJudge | None = None) -> Mining:
    """Judge every candidate of every pair (`candidates`: id -> [greedy or the one candidate, samples ...])."""
    judge = judge or RuleJudge()
    if hasattr(pairs, "select_columns"):  # a Dataset; else a mapping of columns
        pairs = pairs.select_columns([c for c in ("id", "edit_type", "changes") if c in pairs.column_names]).to_dict()
    ids = list(pairs["id"])
    edit_types = dict(zip(ids, pairs.get("edit_type") or [""] * len(ids)))
    move_axes = {pid: move_axis(changes) for pid, changes in zip(ids, pairs["changes"])}
    verdicts, lengths = {}, set()
    for pid, changes in zip(ids, pairs["changes"]):
        texts = list(candidates.get(pid, [""]))
        lengths.add(len(texts))
        verdicts[pid] = [judge_candidate(judge, changes, text) for text in texts]
    if len(lengths) > 1:
        raise ValueError(f"every pair needs the same number of candidates, found {sorted(lengths)}")
    return Mining(ids, edit_types, {pid: list(candidates.get(pid, [""])) for pid in ids}, verdicts,
                  n_samples=max(lengths, default=1) - 1, move_axes=move_axes)


def headroom_notes(table: pd.DataFrame, *, min_gap: float = 0.1) -> list[str]:
    """One line per row of `Mining.pass_rates` but "all" (each edit type, and each move axis: "move left/right",
    "move up/down") on whether preference training has room there: pass@K well above pass@1 (by `min_gap`, on
    the no-P0 criterion) or not."""
    notes = []
    for edit_type, row in table.drop(index="all", errors="ignore").iterrows():
        p1, pk = row["pass@1_p0"], row["pass@K_p0"]
        if pd.isna(pk):
            notes.append(f"{edit_type}: one candidate per pair, no pass@K to compare")
        elif pk - p1 >= min_gap:
            notes.append(f"{edit_type}: pass@K {pk:.2f} vs pass@1 {p1:.2f}: the model sometimes gets it right; "
                         "preference training has room")
        elif p1 >= 1 - min_gap:
            notes.append(f"{edit_type}: pass@1 {p1:.2f}: almost always right already; nothing to fix")
        else:
            notes.append(f"{edit_type}: pass@K {pk:.2f} barely above pass@1 {p1:.2f}: the model rarely writes a "
                         "right answer, so DPO can hardly move it here")
    return notes
