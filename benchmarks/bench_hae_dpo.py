"""HAE-DPO step time / TRL DPO step time on the same batches (goal <= 1.03), smoke and demo tiny Qwen3-VL.

Both trainers start from the same checkpoint; each timed step is one `training_step` (policy forward,
reference forward, loss, backward) on an identical pre-collated batch, the two trainers alternating so that
load on the machine hits both alike. Reports the ratio of the medians and of the fastest steps (the latter is
the steadier on a shared machine). On CPU the run uses one thread (two threads on two busy cores thrash).

Run: python benchmarks/bench_hae_dpo.py
"""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor
from trl import DPOConfig, DPOTrainer

from editcaption.models import build_tiny_model
from editcaption.prompts import INSTRUCTION_PROMPT
from editcaption.records import ERROR_TYPES, PREFERENCE_FEATURES, SEVERITIES
from editcaption.data.preference_rows import load_preferences
from editcaption.train.hae_dpo import HAEDPOConfig, HAEDPOTrainer

datasets.disable_progress_bars()

PRESETS, ROWS, SIZE, BATCH, STEPS, WARMUP, CPU_THREADS = ("smoke", "demo"), 16, 128, 4, 30, 3, 1


def preference_rows(n: int, size: int) -> list[dict]:
    rows = []
    for i in range(n):
        images = []
        for shifted in (False, True):
            image = Image.new("RGB", (size, size), (235, 235, 235))
            x = size // 2 if shifted else size // 8
            ImageDraw.Draw(image).rectangle([x, size // 4, x + size // 4, size // 2], fill=(30 + 13 * i, 90, 200))
            images.append(image)
        rows.append({"id": f"bench-{i}", "images": images, "prompt": INSTRUCTION_PROMPT,
                     "chosen": f"Move the blue square number {i} to the right edge of the image.",
                     "rejected": f"Move the square {i} to the left.", "error_type": ERROR_TYPES[i % 3],
                     "severity": SEVERITIES[i % 3]})
    return rows


def _trainer(trainer_class, config_class, model_dir: Path, rows, out: Path, batch: int, **config):
    args = config_class(output_dir=str(out), per_device_train_batch_size=batch, report_to="none", max_length=None,
                        bf16=torch.cuda.is_available(), activation_checkpointing=False, seed=0, **config)
    model = AutoModelForImageTextToText.from_pretrained(model_dir, dtype=torch.float32)
    trainer = trainer_class(model=model, args=args, train_dataset=rows,
                            processing_class=AutoProcessor.from_pretrained(model_dir))
    trainer.current_gradient_accumulation_steps = 1  # set by train(); training_step is called directly here
    return trainer


def _timed_step(trainer, batch) -> float:
    trainer.model.zero_grad(set_to_none=True)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    trainer.training_step(trainer.model, batch)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start


def run(presets: tuple[str, ...] = PRESETS, steps: int = STEPS) -> dict:
    """Seconds per training step of HAE-DPO (full margin) and TRL DPO, and their ratio, per preset."""
    threads = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(CPU_THREADS)
    results = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "prefs"
            datasets.Dataset.from_list(preference_rows(ROWS, SIZE), features=PREFERENCE_FEATURES).save_to_disk(
                str(data))
            rows = load_preferences(data)[0]
            for preset in presets:
                results[preset] = compare(build_tiny_model(preset, Path(tmp) / preset), rows, Path(tmp), steps)
    finally:
        torch.set_num_threads(threads)
    for preset, r in results.items():
        print(f"HAE-DPO {preset} on {r['device']}: {r['hae_s_per_step'] * 1e3:.1f} ms/step vs TRL DPO "
              f"{r['dpo_s_per_step'] * 1e3:.1f} ms/step -> ratio {r['ratio']:.3f} (fastest steps: "
              f"{r['hae_min_s'] * 1e3:.1f} vs {r['dpo_min_s'] * 1e3:.1f} ms, ratio {r['min_ratio']:.3f}; goal <= 1.03; "
              f"medians of {r['steps']} steps, batch {r['batch']} pairs, {r['image_size']} px images)")
    return results


def compare(model_dir: Path, rows, tmp: Path, steps: int, *, batch: int = BATCH, warmup: int = WARMUP,
            image_size: int = SIZE) -> dict:
    """Median seconds per `training_step` of HAE-DPO (full margin) and TRL DPO from `model_dir`, alternating."""
    hae = _trainer(HAEDPOTrainer, HAEDPOConfig, model_dir, rows, tmp / "hae", batch, hae_variant="hae")
    dpo = _trainer(DPOTrainer, DPOConfig, model_dir, rows, tmp / "dpo", batch)
    times: dict[str, list[float]] = {"hae": [], "dpo": []}
    for n in range(steps + warmup):
        indices = [(n * batch + j) % len(rows) for j in range(batch)]
        for name, trainer in (("hae", hae), ("dpo", dpo)) if n % 2 else (("dpo", dpo), ("hae", hae)):
            seconds = _timed_step(trainer, trainer.data_collator([rows[i] for i in indices]))
            trainer._metrics["train"].clear()  # what log() does every logging window
            if n >= warmup:
                times[name].append(seconds)
    hae_s, dpo_s = statistics.median(times["hae"]), statistics.median(times["dpo"])
    return {"hae_s_per_step": hae_s, "dpo_s_per_step": dpo_s, "ratio": hae_s / dpo_s,
            "hae_min_s": min(times["hae"]), "dpo_min_s": min(times["dpo"]),
            "min_ratio": min(times["hae"]) / min(times["dpo"]), "steps": steps, "batch": batch,
            "image_size": image_size, "device": str(hae.args.device),
            "cpu_threads": None if torch.cuda.is_available() else torch.get_num_threads()}


if __name__ == "__main__":
    run()
