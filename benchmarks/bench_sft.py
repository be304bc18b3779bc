"""SFT training throughput (samples/s, tokens/s, s/step) of the smoke and demo tiny Qwen3-VL on synthetic pairs.

Run: python benchmarks/bench_sft.py
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import datasets

from editcaption.world.synthetic import generate_pairs
from editcaption.models import build_tiny_model
from editcaption.train.recipe import build_stage_args
from editcaption.train.sft import train_sft

datasets.disable_progress_bars()

PRESETS, N_PAIRS, SIZE, STEPS, BATCH = ("smoke", "demo"), 64, 128, 10, 4


def run(presets: tuple[str, ...] = PRESETS, steps: int = STEPS, batch: int = BATCH) -> dict:
    """Train each tiny model for a fixed number of steps (full fine-tuning, fp32, CPU or one GPU)."""
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "pairs"
        generate_pairs(N_PAIRS, seed=0, size=SIZE, progress=False).save_to_disk(str(data))
        for preset in presets:
            model_dir = build_tiny_model(preset, Path(tmp) / preset)
            args, model_args = build_stage_args("sft", {
                "model_name_or_path": str(model_dir), "dataset_path": str(data), "output_dir": f"{tmp}/{preset}-out",
                "max_steps": steps, "per_device_train_batch_size": batch, "learning_rate": 1e-4,
                "logging_steps": steps, "save_steps": steps + 1, "warmup_steps": 0.0, "bf16": False,
                "activation_checkpointing": False,
            })
            m = train_sft(args, model_args)
            r = {"steps": m["global_step"], "batch": batch, "runtime_s": m["train_runtime"],
                 "s_per_step": m["train_runtime"] / m["global_step"],
                 "samples_per_s": m["train_samples_per_second"], "tokens_per_s": m["train_tokens_per_second"],
                 "tokens_per_sample": m["train_tokens"] / (m["global_step"] * batch)}
            results[preset] = r
    for preset, r in results.items():
        print(f"SFT {preset}: {r['samples_per_s']:.1f} samples/s, {r['tokens_per_s']:.0f} tokens/s, "
              f"{r['s_per_step']:.3f} s/step (batch {r['batch']}, {r['tokens_per_sample']:.0f} tokens/sample, "
              f"{r['steps']} steps)")
    return results


if __name__ == "__main__":
    run()
