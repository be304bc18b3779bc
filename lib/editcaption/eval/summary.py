"""Score a list of instructions for a set of pairs with a judge and summarise: the paper's S/Acc/Comp/Clar,
the rate of each failure mode, the P0 rate, and per-op accuracy."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pandas as pd

from editcaption.eval import stats
from editcaption.generation import TransformersBackend
from editcaption.world.rule_judge import ERROR_KINDS, ERROR_TYPES, RuleJudge

FAILURE_MODES = ("orientation", "viewpoint", "detail")


def score_instructions(pairs, instructions: list[str], *, judge: RuleJudge | None = None) -> pd.DataFrame:
    """One row per pair: its id, category, edit type, the three scores, the composite, which failure modes
    (and severities) the judge found, which kinds of P0 error (`p0_omitted`, `p0_wrong`, ...) and which kinds
    of error at any severity (`any_omitted`, ..., `any_unsupported`, ...). `severity` is the worst error's
    ("" when there is none), so it puts the pair in the paper's hierarchy: P0, else P1, else P2, else correct."""
    if len(instructions) != len(pairs):
        raise ValueError(f"{len(instructions)} instructions for {len(pairs)} pairs")
    judge = judge or RuleJudge()
    rows = []
    meta = pairs.select_columns(["id", "category", "edit_type", "changes"])
    for row, text in zip(meta, instructions):
        result = judge.score(row["changes"], text)
        errors = result["errors"]
        rows.append({
            "id": row["id"], "category": row["category"], "edit_type": row["edit_type"], "instruction": text,
            "accuracy": result["accuracy"], "completeness": result["completeness"], "clarity": result["clarity"],
            "composite": result["composite"], "severity": result["severity"], "error_type": result["error_type"],
            **{f"has_{t}": any(e["type"] == t for e in errors) for t in ERROR_TYPES},
            "p0": any(e["severity"] == "P0" for e in errors),
            **{f"p0_{kind}": any(e["severity"] == "P0" and e["kind"] == kind for e in errors) for kind in ERROR_KINDS},
            **{f"any_{kind}": any(e["kind"] == kind for e in errors) for kind in ERROR_KINDS},
        })
    return pd.DataFrame(rows)


def summarize(scores: pd.DataFrame, *, seed: int = 0) -> dict:
    """The table-3 columns (S, Acc, Comp, Clar) with a 95 % bootstrap CI on S, failure-mode and P0 rates,
    and per edit type the share of pairs without a P0 error ("op accuracy")."""
    s, low, high = stats.bootstrap_ci(scores["composite"], seed=seed)
    return {
        "n": int(len(scores)),
        "S": s, "S_ci": [low, high],
        "Acc": float(scores["accuracy"].mean()), "Comp": float(scores["completeness"].mean()),
        "Clar": float(scores["clarity"].mean()),
        "p0_rate": float(scores["p0"].mean()),
        "correct_rate": float((scores["severity"] == "").mean()),
        "failure_rates": {t: float(scores[f"has_{t}"].mean()) for t in FAILURE_MODES},
        "op_accuracy": {op: float(1 - g["p0"].mean()) for op, g in scores.groupby("edit_type")},
    }


AXES = {"left_right": ("left", "right"), "up_down": ("up", "down")}


def direction_swaps(pairs, instructions: list[str]) -> dict:
    """Per axis, how often an instruction for a move states the opposite direction: over the move changes
    whose direction lies on the axis and whose instruction names exactly one of the axis' two words,
    the share naming the wrong one ("swap_rate"; None when no instruction names either)."""
    all_changes = pairs["changes"]
    if len(instructions) != len(all_changes):
        raise ValueError(f"{len(instructions)} instructions for {len(all_changes)} pairs")
    out = {}
    for axis, words in AXES.items():
        right = wrong = unstated = 0
        for changes, text in zip(all_changes, instructions):
            for change in changes:
                if change["op"] != "move" or change["direction"] not in words:
                    continue
                said = {w for w in words if re.search(rf"\b{w}\b", (text or "").lower())}
                if len(said) != 1:
                    unstated += 1
                elif change["direction"] in said:
                    right += 1
                else:
                    wrong += 1
        stated = right + wrong
        out[axis] = {"n": right + wrong + unstated, "stated": stated, "swapped": wrong,
                     "swap_rate": wrong / stated if stated else None}
    return out


def comparison_table(summaries: dict[str, dict]) -> pd.DataFrame:
    """Models side by side: S with its 95 % CI (S low, S high), Acc, Comp, Clar, P0 rate and each failure-mode rate."""
    rows = {}
    for name, s in summaries.items():
        rows[name] = {"S": s["S"], "S low": s["S_ci"][0], "S high": s["S_ci"][1], "Acc": s["Acc"],
                      "Comp": s["Comp"], "Clar": s["Clar"], "P0 rate": s["p0_rate"],
                      **{f"{t} err": s["failure_rates"][t] for t in FAILURE_MODES}}
    return pd.DataFrame.from_dict(rows, orient="index").round(3)


def evaluate_checkpoint(model_path, pairs, *, batch_size: int = 16, max_new_tokens: int = 48,
                        judge: RuleJudge | None = None, cache_path=None) -> tuple[list[str], pd.DataFrame]:
    """Generate one instruction per pair with a checkpoint (the transformers caption backend: greedy,
    batched, resumable through `cache_path`) and score them. A failed generation scores as an empty answer."""

    backend = TransformersBackend(str(model_path), batch_size=batch_size, max_new_tokens=max_new_tokens)
    texts = backend.generate(pairs, cache_path=cache_path)
    return texts, score_instructions(pairs, texts, judge=judge)


@dataclass
class Comparison:
    """Two checkpoints on the same pairs (notebook 02: base, then SFT): their texts, per-pair scores, summaries,
    the paired test of the second's composite against the first's, left/right and up/down swaps, the table."""

    texts: dict[str, list[str]]
    scores: dict[str, pd.DataFrame]
    results: dict[str, dict]
    gain: dict
    swaps: dict[str, dict]
    table: pd.DataFrame

    def report(self) -> None:
        """The gain with its interval and test, and each model's left/right swap rate, printed."""
        g = self.gain
        print(f"S gain of {list(self.results)[1]} over {list(self.results)[0]}: {g['diff']:+.3f} "
              f"[{g['low']:+.3f}, {g['high']:+.3f}], p = {g['p_value']:.4f} ({g['test']})")
        print("left/right swap rate:", {k: v["left_right"]["swap_rate"] for k, v in self.swaps.items()})


def compare_checkpoints(models: dict[str, str], pairs, *, batch_size: int = 16, max_new_tokens: int = 48,
                        seed: int = 0) -> Comparison:
    """`evaluate_checkpoint` for each of the two models (name -> checkpoint), then the comparison."""
    first, second = models  # two names, in order
    texts, scores = {}, {}
    for name, path in models.items():
        texts[name], scores[name] = evaluate_checkpoint(path, pairs, batch_size=batch_size, max_new_tokens=max_new_tokens)
    results = {name: summarize(scores[name], seed=seed) for name in models}
    gain = stats.paired_test(scores[first]["composite"], scores[second]["composite"], seed=seed)
    swaps = {name: direction_swaps(pairs, texts[name]) for name in models}
    return Comparison(texts, scores, results, gain, swaps, comparison_table(results))


def sft_stage_metrics(train_metrics: dict, train_seconds: float, comparison: Comparison, sft_model,
                      checkpoint_selection: dict | None = None) -> dict:
    """What notebook 02 writes to metrics.json: the trainer's metrics (without the log history), the wall time,
    base and SFT summaries, the gain and the direction swaps, the SFT model's folder (what `paths.sft_model`
    reads back) and, when given, how it was chosen (`train.sft.CheckpointSelection.metrics`)."""
    metrics = {"train": {k: v for k, v in train_metrics.items() if k != "log_history"},
               "train_wall_seconds": train_seconds, "base": comparison.results["base"], "sft": comparison.results["SFT"],
               "sft_gain": comparison.gain, "direction_swaps": comparison.swaps, "sft_model": str(sft_model)}
    if checkpoint_selection is not None:
        metrics["checkpoint_selection"] = checkpoint_selection
    return metrics
