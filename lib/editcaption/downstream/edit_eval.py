"""Score edited images against the known targets: PSNR, SSIM and a per-cell edit-success check (table 5, CPU).

Edit success uses the synthetic grid (objects fill whole `cell`×`cell` cells): the cells an edit touches
are those where source and target differ; in each, the pixels that differ vote — is the output's pixel
closer (RGB distance) to the target's than to the source's? A cell passes when most of its changed pixels
vote for the target. A pair succeeds when every touched cell passes and the rest of the image is kept
(at least KEEP_SHARE of the pixels outside the touched cells within CHANGED_LEVEL of the target), so an
editor that repaints everything does not pass by chance. This checks the edited object's new colour, its
new position (the old cell must lose it, the new cell gain it) and an added or removed object's presence,
without trusting the pair's text. Copying the source fails every pair; the target passes every pair.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping, Sequence

import datasets
import numpy as np
import pandas as pd
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from editcaption import paths
from editcaption.data.construct import parse_edit_types
from editcaption.data.teacher import SimulatedTeacher
from editcaption.downstream import (
    cluster,
    export_instructpix2pix,
    export_step1x,
    read_instructpix2pix,
    read_report,
    step1x,
)
from editcaption.downstream.editor import CHANGED_LEVEL, to_array, train_editor
from editcaption.eval import stats
from editcaption.eval import summary as instruction_summary
from editcaption.generation import TransformersBackend
from editcaption.world.synthetic import generate_pairs

CELL = 32  # synthetic grid cell side in px
MIN_CHANGED_PIXELS = 8  # a cell with fewer changed pixels is not touched by the edit (anti-aliasing noise)
KEEP_SHARE = 0.95  # share of the pixels outside the touched cells that must stay as in the target
MAIN_METRICS = ("PSNR", "SSIM", "edit_success")


def psnr(output: np.ndarray, target: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (scikit-image, float64, data range 255; inf when
    equal)."""
    if np.array_equal(output, target):
        return math.inf
    return float(peak_signal_noise_ratio(target, output, data_range=255))


def ssim(output: np.ndarray, target: np.ndarray) -> float:
    """Mean SSIM of two uint8 RGB images (scikit-image, float64: Wang et al.'s 11-tap Gaussian window, σ 1.5,
    population covariances, per channel, averaged over the valid region). The editor's training loss is
    torchmetrics' differentiable map (`editor.ssim_map`), the same formula in float32; evaluation stays in
    float64, where torchmetrics' single 2-D convolution takes 270 ms per 128 px image on a CPU and scikit-image's
    separable filter 7 ms."""
    return float(structural_similarity(output, target, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                       data_range=255, channel_axis=2))


def changed_mask(source: np.ndarray, target: np.ndarray, level: int = CHANGED_LEVEL) -> np.ndarray:
    """[H, W] bool: pixels where some channel differs by more than `level`."""
    return (np.abs(source.astype(np.int16) - target.astype(np.int16)) > level).any(axis=2)


def _touched(mask: np.ndarray, cell: int) -> list[tuple[int, int]]:
    return [(r, c) for r in range(mask.shape[0] // cell) for c in range(mask.shape[1] // cell)
            if mask[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].sum() >= MIN_CHANGED_PIXELS]


def cell_votes(output: np.ndarray, source: np.ndarray, target: np.ndarray, *, cell: int = CELL) -> list[dict]:
    """For each cell the edit touches: its (row, col), changed pixels, and the share of them where the output
    is closer to the target than to the source."""
    if not output.shape == source.shape == target.shape:
        raise ValueError(f"image shapes differ: output {output.shape}, source {source.shape}, target {target.shape}")
    mask = changed_mask(source, target)
    out, src, tgt = (x.astype(np.float32) for x in (output, source, target))
    to_target = np.linalg.norm(out - tgt, axis=2) < np.linalg.norm(out - src, axis=2)
    votes = []
    for r, c in _touched(mask, cell):
        window = (slice(r * cell, (r + 1) * cell), slice(c * cell, (c + 1) * cell))
        votes.append({"cell": (r, c), "changed": int(mask[window].sum()),
                      "to_target": float(to_target[window][mask[window]].mean())})
    return votes


def kept_share(output: np.ndarray, source: np.ndarray, target: np.ndarray, *, cell: int = CELL) -> float:
    """Share of the pixels outside the touched cells where the output is within CHANGED_LEVEL of the target
    (1.0 when the edit touches every cell)."""
    outside = np.ones(output.shape[:2], dtype=bool)
    for r, c in _touched(changed_mask(source, target), cell):
        outside[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell] = False
    if not outside.any():
        return 1.0
    return float((~changed_mask(output, target))[outside].mean())


def edit_success(output: np.ndarray, source: np.ndarray, target: np.ndarray, *, cell: int = CELL) -> dict:
    """{"success": True/False, or None when no cell is touched, "cells": touched, "cells_ok": passing,
    "kept": share of the rest of the image kept}."""
    votes = cell_votes(output, source, target, cell=cell)
    ok = sum(v["to_target"] > 0.5 for v in votes)
    kept = kept_share(output, source, target, cell=cell)
    success = (ok == len(votes) and kept >= KEEP_SHARE) if votes else None
    return {"success": success, "cells": len(votes), "cells_ok": ok, "kept": kept}


def score_edits(pairs, outputs: Sequence[np.ndarray], *, cell: int = CELL) -> pd.DataFrame:
    """One row per pair (rows with id, edit_type, category, source_image, target_image): PSNR, SSIM, success,
    cells touched and passing, and the share of the rest of the image kept."""
    if len(outputs) != len(pairs):
        raise ValueError(f"{len(outputs)} outputs for {len(pairs)} pairs")
    rows = []
    for row, out in zip(pairs, outputs):
        src = to_array(row["source_image"], row=row["id"], field="source_image")
        tgt = to_array(row["target_image"], row=row["id"], field="target_image")
        check = edit_success(out, src, tgt, cell=cell)
        rows.append({"id": row["id"], "category": row.get("category", ""), "edit_type": row.get("edit_type", ""),
                     "PSNR": psnr(out, tgt), "SSIM": ssim(out, tgt), "success": check["success"],
                     "cells": check["cells"], "cells_ok": check["cells_ok"], "kept": check["kept"]})
    return pd.DataFrame(rows)


def summarize_edits(scores: pd.DataFrame, *, seed: int = 0) -> dict:
    """Means with 95 % bootstrap CIs: PSNR (dB; an exact copy counts as 100 dB), SSIM, edit success (%) overall
    and per edit type; pairs without a touched cell are left out of the success rate and counted."""
    psnr_values = scores["PSNR"].clip(upper=100.0)
    judged = scores[scores["success"].notna()]
    out = {"n": int(len(scores)), "n_success_undefined": int(len(scores) - len(judged))}
    for name, values in (("PSNR", psnr_values), ("SSIM", scores["SSIM"]),
                         ("edit_success", 100.0 * judged["success"].astype(float))):
        mean, low, high = stats.bootstrap_ci(values, seed=seed) if len(values) else (float("nan"),) * 3
        out[name] = {"value": mean, "low": low, "high": high}
    out["per_op"] = {}
    for op, group in judged.groupby("edit_type"):
        mean, low, high = stats.bootstrap_ci(100.0 * group["success"].astype(float), seed=seed)
        out["per_op"][op] = {"value": mean, "low": low, "high": high, "n": int(len(group))}
    return out


def table5_rows(summaries: Mapping[str, dict], *, data: str, judge: str = "pixels-vs-target",
                benchmark: str = "synthetic-heldout") -> pd.DataFrame:
    """Table 5's long rows (records.LONG_COLUMNS): per captioner PSNR, SSIM, edit_success and
    `edit_success:<op>` per edit type."""
    rows = []
    for model, summary in summaries.items():
        metrics = [(m, summary[m]) for m in MAIN_METRICS] + [(f"edit_success:{op}", v) for op, v in summary["per_op"].items()]
        for metric, cell in metrics:
            rows.append({"table": "table5", "model": model, "benchmark": benchmark, "metric": metric,
                         "value": cell["value"], "low": cell["low"], "high": cell["high"], "judge": judge, "data": data})
    return pd.DataFrame(rows)


def op_success_table(summaries: Mapping[str, dict]) -> pd.DataFrame:
    """Edit success (%) per edit type (rows) and captioner (columns)."""
    return pd.DataFrame({name: {op: v["value"] for op, v in s["per_op"].items()} for name, s in summaries.items()})


def identity_outputs(pairs) -> list[np.ndarray]:
    """The no-edit baseline: each pair's source image."""
    return [to_array(r["source_image"], row=r["id"], field="source_image") for r in pairs]



# ------------------------------------------------------------------------------------------ the CPU table-5 pipeline

EDITOR_SEED_OFFSET = 3_000_000  # the editor's pairs come from generator seed `seed + this` (01: +0 and +1e6, 03: +2e6)
CAPTIONERS = {  # table-5 row key -> display name
    "base": "base (no SFT)", "sft": "SFT", "hae_dpo": "HAE-DPO", "teacher": "teacher (simulated)",
    "gt": "GT instructions (upper bound)",
}
IDENTITY = "identity (no edit)"


def editor_pairs(n_train: int, n_eval: int, *, seed: int, image_size: int, layout: str = "grid", edit_types: str = "",
                 max_objects: int = 0):
    """(train, eval) synthetic pairs for the editor, from their own generator stream (seed + EDITOR_SEED_OFFSET),
    in notebook 01's world (`edit_types`, `max_objects`)."""

    if layout != "grid":
        raise ValueError(f"layout {layout!r}: the edit-success check reads the grid's {CELL} px cells; use layout='grid'")
    if n_train < 1 or n_eval < 1:
        raise ValueError(f"n_editor_train_pairs and n_editor_eval_pairs must be >= 1, got {n_train} and {n_eval}")
    pairs = generate_pairs(n_train + n_eval, seed=seed + EDITOR_SEED_OFFSET, size=image_size, layout=layout,
                           cell=CELL, progress=False, edit_types=parse_edit_types(edit_types), max_objects=max_objects)
    return pairs.select(range(n_train)), pairs.select(range(n_train, n_train + n_eval))


def _notebook_04_model(run_name: str, output_root, variant: str) -> tuple[str, str]:
    """(checkpoint, variant) of notebook 04: `variant` when it trained it, else the variant with the lowest P0
    error rate over the validation subsets."""

    metrics = json.loads(paths.upstream("", run_name, "04_hae_dpo", "metrics.json", output_root).read_text())
    trained = metrics.get("variants", [])
    if variant not in trained:
        if not trained:
            raise FileNotFoundError("notebook 04 recorded no trained variant")
        pooled = {r["model"]: r["rate"] for r in metrics.get("validation_rates", [])
                  if r["subset"] == "all" and r["measure"] == "p0" and r["model"] in trained}
        variant = min(trained, key=lambda v: pooled.get(v, float("inf")))
    return paths.dpo_model(variant, run_name, output_root), variant


def resolve_captioners(names: str, *, run_name: str, output_root="outputs", model_name_or_path: str = "",
                       sft_model_path: str = "", dpo_model_path: str = "", hae_variant: str = "hae"
                       ) -> tuple[dict[str, dict], dict[str, str]]:
    """The captioners to run ({key: {"label", "model"}}; the teacher's and GT's model is "") and those skipped
    ({key: reason}) because the run lacks the notebook that makes them (a path parameter overrides the run)."""

    keys = [k.strip() for k in names.split(",") if k.strip()]
    unknown = [k for k in keys if k not in CAPTIONERS]
    if unknown or not keys:
        raise ValueError(f"captioners {names!r}: expected a comma-separated subset of {', '.join(CAPTIONERS)}")
    found, skipped = {}, {}
    for key in keys:
        label = CAPTIONERS[key]
        try:
            if key == "base":
                model = paths.model_source(model_name_or_path) if model_name_or_path else str(
                    paths.upstream("", run_name, "02_sft", "base_model", output_root))
            elif key == "sft":
                model = paths.sft_model(sft_model_path, run_name, output_root)
            elif key == "hae_dpo" and dpo_model_path:
                model = paths.model_source(dpo_model_path)
            elif key == "hae_dpo":
                model, variant = _notebook_04_model(run_name, output_root, hae_variant)
                label = f"HAE-DPO ({variant})" if variant == "hae" else f"DPO variant {variant}"
            else:
                model = ""
        except (FileNotFoundError, KeyError) as err:
            skipped[key] = f"{label}: {err}"
            continue
        found[key] = {"label": label, "model": model}
    return found, skipped


def caption_for_editor(key: str, model: str, pairs, *, seed: int, teacher_rates: Mapping[str, float],
                       batch_size: int, max_new_tokens: int, cache_path: str | Path) -> tuple[list[str], dict]:
    """One instruction per pair from a captioner (a checkpoint through the transformers backend, greedy and
    cached; the SIMULATED teacher; or the GT instructions) and the backend's stats."""

    if key == "gt":
        texts = list(pairs["instruction"])
        return texts, {"backend": "ground truth", "n": len(texts), "n_ok": len(texts), "n_failed": 0}
    if key == "teacher":
        backend = SimulatedTeacher(seed=seed, rates=dict(teacher_rates))
    else:
        backend = TransformersBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens, seed=seed)
    texts = backend.generate(pairs, cache_path=cache_path, progress=False)
    return texts, {k: v for k, v in backend.stats.items() if k != "failures"}


def triplet_rows(pairs, instructions: Sequence[str]) -> list[dict]:
    """Export rows {id, source_image, target_image, instruction} (images left undecoded)."""
    raw = pairs.select_columns(["id", "source_image", "target_image"])
    raw = raw.cast_column("source_image", datasets.Image(decode=False)).cast_column("target_image",
                                                                                    datasets.Image(decode=False))
    return [{**row, "instruction": text} for row, text in zip(raw, instructions)]


def train_captioner_editors(found: Mapping[str, dict], train_pairs, stage_dir: str | Path, editor_config, *, seed: int,
                            teacher_rates: Mapping[str, float], batch_size: int,
                            max_new_tokens: int) -> tuple[dict, dict, dict]:
    """Per captioner: caption `train_pairs`, export them as InstructPix2Pix triplets under stage_dir/triplets/<key>,
    read them back and train an editor (stage_dir/editors/<key>). Returns (results, texts, skipped): a captioner
    without one usable caption is skipped with its reason."""
    import time

    stage_dir = Path(stage_dir)
    results, texts, skipped = {}, {}, {}
    for key, c in found.items():
        start = time.perf_counter()
        texts[key], caption_stats = caption_for_editor(
            key, c["model"], train_pairs, seed=seed, teacher_rates=teacher_rates, batch_size=batch_size,
            max_new_tokens=max_new_tokens, cache_path=stage_dir / "captions" / f"{key}.jsonl")
        caption_seconds = time.perf_counter() - start
        quality = instruction_summary.summarize(instruction_summary.score_instructions(train_pairs, texts[key]), seed=seed)
        folder = export_instructpix2pix(triplet_rows(train_pairs, texts[key]), stage_dir / "triplets" / key, on_error="skip")
        triplets = read_instructpix2pix(folder)
        if not triplets:
            skipped[key] = f"{c['label']}: no usable caption among {len(train_pairs)} pairs"
            continue
        editor = train_editor(triplets, editor_config, out_dir=stage_dir / "editors" / key, desc=c["label"])
        results[key] = {"label": c["label"], "model": c["model"], "editor": editor, "caption_stats": caption_stats,
                        "caption_seconds": caption_seconds, "caption_quality": quality, "export": read_report(folder),
                        "n_triplets": len(triplets), "distinct_captions": len(set(texts[key]))}
        print(f"{c['label']:<32} caption S {quality['S']:.2f}  distinct captions {len(set(texts[key]))}  "
              f"triplets {len(triplets)}  train {editor.info['seconds']:.1f} s  "
              f"loss {editor.info['first_loss']:.4f} -> {editor.info['final_loss']:.4f}")
    return results, texts, skipped


def example_indices(pairs, n: int) -> list[int]:
    """Up to n pair indices, one per edit type first (in pair order), then the next pairs."""
    picked, seen = [], set()
    for i, op in enumerate(pairs["edit_type"]):
        if op not in seen and len(picked) < n:
            picked.append(i)
            seen.add(op)
    picked += [i for i in range(len(pairs)) if i not in picked][: n - len(picked)]
    return sorted(picked)


def paired_differences(scores: Mapping[str, pd.DataFrame], baseline: str, *, seed: int = 0) -> pd.DataFrame:
    """Per captioner against `baseline`, over the same eval pairs: the PSNR (dB) and edit-success (points)
    differences with their BCa bootstrap 95 % intervals and paired permutation p-values (`stats.paired_test`,
    named in the `test` column)."""
    base = scores[baseline]
    rows = {}
    for name, df in scores.items():
        if name == baseline:
            continue
        judged = base["success"].notna() & df["success"].notna()
        p = stats.paired_test(base["PSNR"].clip(upper=100.0), df["PSNR"].clip(upper=100.0), seed=seed)
        s = stats.paired_test(100.0 * base.loc[judged, "success"].astype(float),
                              100.0 * df.loc[judged, "success"].astype(float), seed=seed)
        rows[name] = {"Δ PSNR": p["diff"], "Δ PSNR low": p["low"], "Δ PSNR high": p["high"], "PSNR p": p["p_value"],
                      "Δ success": s["diff"], "Δ success low": s["low"], "Δ success high": s["high"],
                      "success p": s["p_value"], "test": p["test"]}
    return pd.DataFrame.from_dict(rows, orient="index")


EDITOR_BACKENDS = ("cpu", "step1x")
DEFAULT_JUDGE_URL = "https://api.openai.com/v1"


@dataclass
class Step1XPlan:
    """Whether table 5's Step1X-Edit path runs (`run`), the keyword arguments of `cluster.run_table5`, and what
    the cluster path lacks here ([] when it can run)."""

    run: bool
    settings: dict = field(default_factory=dict)
    missing: list = field(default_factory=list)


def cluster_settings(editor_backend: str, *, step1x_checkout: str, step1x_model_dir: str, gedit_data: str,
                     imgedit_checkout: str, imgedit_images: str, judge_model: str, judge_base_url: str,
                     judge_api_key_env: str) -> Step1XPlan:
    """The Step1X-Edit plan: for `cpu` it does not run (and lists what a cluster run would need); for `step1x`
    every requirement is checked first (ClusterRequirementError lists all that is missing, before any work)."""

    if editor_backend not in EDITOR_BACKENDS:
        raise ValueError(f"editor_backend {editor_backend!r}: expected one of {', '.join(EDITOR_BACKENDS)}")
    paths_ = {"step1x_checkout": step1x_checkout, "step1x_model_dir": step1x_model_dir, "gedit_data": gedit_data,
              "imgedit_checkout": imgedit_checkout, "imgedit_images": imgedit_images}
    missing = cluster.cluster_requirements(**paths_, api_key_env=judge_api_key_env)
    settings = {**paths_, "judge_model": judge_model, "judge_base_url": judge_base_url or DEFAULT_JUDGE_URL,
                "api_key_env": judge_api_key_env}
    if editor_backend == "cpu":
        return Step1XPlan(False, settings, missing)
    if missing:
        raise step1x.ClusterRequirementError("notebook 07 with editor_backend='step1x'", missing)
    return Step1XPlan(True, settings, [])


def print_setup(found: Mapping[str, dict], skipped: Mapping[str, str], train_pairs, eval_pairs, image_size: int,
                editor_config) -> None:
    """One line per captioner and its model, one per skipped captioner, then the pairs and the editor."""
    for c in found.values():
        print(f"{c['label']:<32} {c['model'] or '(no model)'}")
    for reason in skipped.values():
        print(f"SKIPPED {reason}")
    print(f"{len(train_pairs)} training pairs, {len(eval_pairs)} held-out pairs, {image_size} px; editor {editor_config}")


def evaluate_editors(results: Mapping[str, Mapping], eval_pairs, *, seed: int):
    """Every captioner's editor (and the identity baseline) edits the held-out pairs from their GT instructions:
    (captioner key -> label, label -> edited images, label -> per-pair scores, label -> `summarize_edits`)."""
    labels = {key: r["label"] for key, r in results.items()}
    outputs = {r["label"]: r["editor"].edit(eval_pairs["source_image"], eval_pairs["instruction"])
               for r in results.values()}
    outputs[IDENTITY] = identity_outputs(eval_pairs)
    scores = {name: score_edits(eval_pairs, out) for name, out in outputs.items()}
    summaries = {name: summarize_edits(df, seed=seed) for name, df in scores.items()}
    return labels, outputs, scores, summaries


def table5_data(eval_pairs, train_pairs) -> str:
    """Table 5's `data` cell for the CPU editors."""
    return f"synthetic-heldout n={len(eval_pairs)} GT instructions; editors trained on {len(train_pairs)} captioned pairs"


def step1x_table5(plan: Step1XPlan, results: Mapping[str, Mapping], texts: Mapping[str, Sequence[str]], train_pairs,
                  labels: Mapping[str, str], stage_dir: str | Path, *, seed: int) -> pd.DataFrame | None:
    """Table 5's rows on a cluster: each captioner's training triplets exported for Step1X-Edit, a LoRA per
    captioner, GEdit-Bench and ImgEdit-Bench judged (`cluster.run_table5`), rows under the captioners' labels.
    With the CPU editor alone: None, after listing what the cluster path needs."""
    if not plan.run:
        print("editor_backend is 'cpu': Step1X-Edit not run. On a cluster it needs:")
        for need in plan.missing:
            print("  -", need)
        return None
    exports = {key: export_step1x(triplet_rows(train_pairs, texts[key]), Path(stage_dir) / "step1x_exports", name=key,
                                  on_error="skip") for key in results}
    rows = cluster.run_table5(exports, Path(stage_dir) / "step1x", seed=seed, **plan.settings)
    rows["model"] = rows["model"].map(labels)
    return rows


def stage_metrics(results: Mapping[str, Mapping], stage_dir: str | Path, *, skipped, train_pairs, eval_pairs, world,
                  editor_config, summaries, table5: pd.DataFrame, per_op: pd.DataFrame, reference: str,
                  differences: pd.DataFrame, editor_backend: str, step1x_rows: pd.DataFrame | None) -> dict:
    """What notebook 07 writes to metrics.json: per captioner its instructions' statistics and quality and its
    editor; the pairs, the world and the editor settings; table 5, success per op, the paired differences."""
    quality_keys = ("S", "S_ci", "Acc", "Comp", "Clar", "p0_rate")
    return {
        "captioners": {key: {"label": r["label"], "model": r["model"], "n_triplets": r["n_triplets"],
                             "distinct_captions": r["distinct_captions"], "export": r["export"],
                             "caption_stats": r["caption_stats"], "caption_seconds": r["caption_seconds"],
                             "caption_quality": {k: r["caption_quality"][k] for k in quality_keys},
                             "editor": r["editor"].info, "editor_dir": str(Path(stage_dir) / "editors" / key)}
                       for key, r in results.items()},
        "skipped": skipped, "n_train_pairs": len(train_pairs), "n_eval_pairs": len(eval_pairs), "world": world.as_dict(),
        "editor_config": vars(editor_config),
        "train_seconds": {r["label"]: r["editor"].info["seconds"] for r in results.values()},
        "results": summaries, "table5": table5.to_dict(orient="index"), "per_op": per_op.to_dict(),
        "paired_vs": reference, "paired": differences.to_dict(orient="index"), "editor_backend": editor_backend,
        "step1x_table5": None if step1x_rows is None else step1x_rows.to_dict(orient="records")}


def paired_vs_reference(scores: Mapping[str, pd.DataFrame], labels: Mapping[str, str], *, seed: int = 0):
    """(reference captioner, `paired_differences` of every captioner's editor against it): the base captioner's
    editor when it ran, else the first; the identity baseline is left out."""
    reference = labels.get("base") or next(iter(labels.values()))
    return reference, paired_differences({name: scores[name] for name in labels.values()}, reference, seed=seed)


def editor_histories(results: Mapping[str, Mapping]) -> dict[str, list]:
    """Captioner label -> its editor's training loss history."""
    return {r["label"]: r["editor"].history for r in results.values()}
