"""One-GPU check of the cluster path: SFT and HAE-DPO on CUDA in bf16, throughput and MFU, ZeRO-3, vLLM, EditScore.

    python benchmarks/gpu_check.py                    # on a GPU: a random Qwen3-VL of 2B's shape, two 1024 px images
    python benchmarks/gpu_check.py --preset smoke     # on CPU: the tiny model, the same code path, in about a minute

Nothing is downloaded: the model is the tiny-model factory's `qwen3vl-2b-shape` preset (Qwen3-VL-2B's dimensions,
random weights, the small local tokenizer with Qwen's 151936 embedding rows). Each part runs on its own; a part
whose package does not import is skipped with the reason, a part that raises is recorded as failed (and the exit
code is 1). Writes `outputs/gpu_check/<preset>-<device>.json` and prints a table.

- **SFT**: TRL's `SFTTrainer` (completion-only loss, the trainer's own optimizer step) timed per step after
  warm-up: samples/s, tokens/s (tokens the language model sees: text + merged vision tokens, no padding), peak
  memory, with `sdpa`, and with `flash_attention_2` and Liger kernels when they import (CUDA only).
- **MFU** = model FLOPs per step / seconds per step / the GPU's dense bf16 peak (both printed). FLOPs are counted
  by `torch.utils.flop_counter.FlopCounterMode` on one forward + backward of a real batch (every matmul and
  attention kernel, vision tower included; the optimizer step not), once with sdpa, and used for every kernel.
  Beside it the textbook estimate 6 · N · tokens (N: the weights of the matrices each token passes through,
  attention scores left out), as a cross-check.
- **HAE-DPO / TRL DPO** step-time ratio on the same batches (`bench_hae_dpo.compare`; CPU: 1.006-1.016).
- **ZeRO-3**: one `accelerate launch` of `editcaption.train.sft` with `params/accelerate/zero3.yaml` on one
  process (NCCL on CUDA; on CPU the small-bucket gloo config the tests use).
- **vLLM**: the project's `vllm` caption backend on the saved random model; **EditScore**: the real scorer, given
  local copies of its backbone and LoRA (`--editscore-model`, `--editscore-lora`): they come from the hub.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import traceback
from importlib import import_module
from pathlib import Path

import datasets
import torch
from transformers import GenerationConfig, Qwen3VLForConditionalGeneration, TrainerCallback
from trl import SFTConfig, SFTTrainer

from bench_hae_dpo import compare as compare_dpo_steps
from bench_hae_dpo import preference_rows
from editcaption import paths
from editcaption.world.synthetic import generate_pairs
from editcaption.generation import make_backend
from editcaption.models.tiny import PRESETS, tiny_model_parts
from editcaption.records import PREFERENCE_FEATURES
from editcaption.train import launch
from editcaption.data.preference_rows import load_preferences
from editcaption.train.sft import load_sft_dataset, sample_lengths

datasets.disable_progress_bars()

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, TFLOP/s; the first name found in the
# device name wins (H800 and H200 share H100's SXM peak).
PEAK_BF16_TFLOPS = (("H200", 989.4), ("H800", 989.4), ("H100", 989.4), ("H20", 148.0), ("A800", 312.0),
                    ("A100", 312.0), ("L40S", 362.05), ("L4", 121.0), ("A10", 125.0))
PARTS = ("sft", "dpo_ratio", "zero3", "vllm", "editscore")
CUDA = torch.cuda.is_available()
DEFAULTS = {  # per device: the preset, image side (px), batch, timed steps, warm-up steps
    True: {"preset": "qwen3vl-2b-shape", "image_size": 1024, "batch": 4, "steps": 10, "warmup": 3},
    False: {"preset": "smoke", "image_size": 128, "batch": 2, "steps": 2, "warmup": 1},
}


def peak_tflops(device_name: str, override: float | None) -> float | None:
    """The GPU's dense bf16 peak: the override, else the table's entry for the device name, else None."""
    if override:
        return override
    return next((peak for name, peak in PEAK_BF16_TFLOPS if name in device_name), None)


def environment() -> dict:
    versions = {}
    for name in ("torch", "transformers", "trl", "accelerate", "deepspeed", "vllm", "flash_attn", "liger_kernel",
                 "editscore"):
        try:
            versions[name] = getattr(import_module(name), "__version__", "installed")
        except Exception as exc:  # noqa: BLE001 - a package that fails to import is reported, not fatal
            versions[name] = f"not importable ({type(exc).__name__}: {str(exc)[:120]})"
    device = torch.cuda.get_device_name(0) if CUDA else platform.processor() or platform.machine()
    return {"device": device, "cuda": CUDA, "cuda_version": torch.version.cuda, "python": platform.python_version(),
            "cpu_threads": torch.get_num_threads(), "versions": versions}


def build_model(preset: str, dtype: torch.dtype, attn: str = "sdpa"):
    """(model on the device, processor) of a tiny-model preset, random weights, nothing written."""
    processor, config = tiny_model_parts(preset)
    torch.manual_seed(0)
    with torch.device("cuda" if CUDA else "cpu"):
        model = Qwen3VLForConditionalGeneration._from_config(config, dtype=dtype, attn_implementation=attn)
    tokenizer = processor.tokenizer
    model.generation_config = GenerationConfig(pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.pad_token_id,
                                               eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
                                               do_sample=False)
    return model, processor


def matmul_parameters(model) -> tuple[int, int, int]:
    """Weights of the matrices (text side incl. the LM head, per token; the vision tower's patch embedding and
    blocks, per patch; its mergers, per merged token)."""
    language = model.model.language_model
    text = sum(p.numel() for n, p in language.named_parameters() if p.dim() == 2 and "embed_tokens" not in n)
    text += model.lm_head.weight.numel()
    visual = model.model.visual
    per_patch = sum(p.numel() for n, p in visual.named_parameters()
                    if p.dim() >= 2 and n.startswith(("patch_embed", "blocks")))
    per_merged = sum(p.numel() for n, p in visual.named_parameters() if p.dim() >= 2 and "merger" in n)
    return text, per_patch, per_merged


class StepTimer(TrainerCallback):
    """Wall seconds of each optimizer step (synchronised on CUDA)."""

    def __init__(self):
        self.seconds: list[float] = []
        self._start = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        if CUDA:
            torch.cuda.synchronize()
        self._start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if CUDA:
            torch.cuda.synchronize()
        self.seconds.append(time.perf_counter() - self._start)


def sft_trainer(model, processor, dataset, out: Path, batch: int, max_steps: int, liger: bool = False, callbacks=()):
    args = SFTConfig(output_dir=str(out), per_device_train_batch_size=batch, max_steps=max_steps, learning_rate=1e-5,
                     lr_scheduler_type="constant", bf16=CUDA, activation_checkpointing=False, max_length=None,
                     completion_only_loss=True, report_to="none", save_strategy="no", logging_steps=max_steps,
                     dataloader_pin_memory=CUDA, use_liger_kernel=liger, seed=0)
    return SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                      callbacks=list(callbacks))


def count_step_flops(model, processor, dataset, out: Path, batch: int) -> tuple[float, int]:
    """(FLOPs of one forward + backward, tokens in that batch) by FlopCounterMode on the first batch."""
    from torch.utils.flop_counter import FlopCounterMode

    trainer = sft_trainer(model, processor, dataset, out, batch, max_steps=1)
    trainer.current_gradient_accumulation_steps = 1  # set by train(); training_step is called directly here
    inputs = next(iter(trainer.get_train_dataloader()))
    with FlopCounterMode(display=False) as counter:
        trainer.training_step(trainer.model, inputs)
    model.zero_grad(set_to_none=True)
    return float(counter.get_total_flops()), int(inputs["attention_mask"].sum())


def measure_sft(args, dataset, tmp: Path, peak: float | None) -> dict:
    """SFT figures per attention kernel; FLOPs counted once with sdpa."""
    dtype = torch.bfloat16 if CUDA else torch.float32
    model, processor = build_model(args.preset, dtype)
    lengths = sample_lengths(dataset, processor)
    tokens_per_sample = sum(lengths) / len(lengths)
    flops, flop_tokens = count_step_flops(model, processor, dataset, tmp / "flops", args.batch)
    flops_per_token = flops / flop_tokens
    text_params, patch_params, merger_params = matmul_parameters(model)
    patches = 2 * processor.image_processor.get_number_of_image_patches(args.image_size, args.image_size)
    merge = processor.image_processor.merge_size ** 2
    estimate = 6 * (text_params * tokens_per_sample + patch_params * patches + merger_params * patches / merge)
    estimate /= tokens_per_sample
    result = {"status": "ok", "tokens_per_sample": tokens_per_sample, "flops_per_token_counted": flops_per_token,
              "flops_per_token_6N": estimate, "text_matmul_parameters": text_params,
              "vision_matmul_parameters": patch_params + merger_params,
              "parameters": sum(p.numel() for p in model.parameters()),
              "peak_bf16_tflops": peak, "kernels": {}}
    kernels = [("sdpa", "sdpa", False)]
    if CUDA:
        kernels += [("flash_attention_2", "flash_attention_2", False), ("sdpa+liger", "sdpa", True)]
    for name, attn, liger in kernels:
        needs = "flash_attn" if attn == "flash_attention_2" else "liger_kernel" if liger else None
        if needs and not _importable(needs):
            result["kernels"][name] = {"status": "skipped", "reason": f"{needs} does not import"}
            continue
        try:
            if name != "sdpa":
                model = None  # free the previous kernel's model first (a failed build must not leave it unbound)
                _free()
                model, processor = build_model(args.preset, dtype, attn)
            result["kernels"][name] = _time_sft(model, processor, dataset, tmp / name, args, liger, tokens_per_sample,
                                                flops_per_token, peak)
        except Exception as exc:  # noqa: BLE001 - one kernel failing must not hide the others
            result["kernels"][name] = _failure(exc)
    return result


def _time_sft(model, processor, dataset, out, args, liger, tokens_per_sample, flops_per_token, peak) -> dict:
    timer = StepTimer()
    if CUDA:
        torch.cuda.reset_peak_memory_stats()
    trainer = sft_trainer(model, processor, dataset, out, args.batch, args.warmup + args.steps, liger, [timer])
    trainer.train()
    seconds = statistics.median(timer.seconds[args.warmup:])
    tokens_per_s = tokens_per_sample * args.batch / seconds
    achieved = flops_per_token * tokens_per_s
    return {"status": "ok", "s_per_step": seconds, "samples_per_s": args.batch / seconds, "tokens_per_s": tokens_per_s,
            "achieved_tflops": achieved / 1e12, "mfu": achieved / (peak * 1e12) if peak else None,
            "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if CUDA else None,
            "final_loss": trainer.state.log_history[-1].get("train_loss")}


def measure_dpo_ratio(args, model_dir: Path, tmp: Path) -> dict:
    data = tmp / "prefs"
    rows = preference_rows(max(8, 2 * args.batch), args.image_size)
    datasets.Dataset.from_list(rows, features=PREFERENCE_FEATURES).save_to_disk(str(data))
    result = compare_dpo_steps(model_dir, load_preferences(data)[0], tmp, args.steps, batch=args.batch,
                               warmup=args.warmup, image_size=args.image_size)
    return {"status": "ok", **result}


def zero3_params(model_dir: Path, pairs_dir: Path, out: Path, batch: int) -> dict:
    """The SFT recipe of the launched ZeRO-3 step: one optimizer step of `batch` samples."""
    return {"model_name_or_path": str(model_dir), "dataset_path": str(pairs_dir), "output_dir": str(out),
            "max_steps": 1, "per_device_train_batch_size": batch, "global_batch_size": batch, "bf16": CUDA,
            "activation_checkpointing": False, "save_steps": 10, "logging_steps": 1, "report_to": "none"}


def measure_zero3(args, model_dir: Path, pairs_dir: Path, tmp: Path) -> dict:
    config = "params/accelerate/zero3.yaml" if CUDA else "params/accelerate/zero3_cpu_test.yaml"
    tmp.mkdir(parents=True, exist_ok=True)
    params = zero3_params(model_dir, pairs_dir, tmp / "out", args.batch)
    seconds = launch.run_training("editcaption.train.sft", params, tmp, accelerate_config=config, num_processes=1)
    metrics = json.loads((tmp / "out" / "train_metrics.json").read_text())
    return {"status": "ok", "config": config, "wall_s": seconds, "global_step": metrics["global_step"],
            "train_loss": metrics["train_loss"], "world_size": metrics["world_size"]}


def measure_vllm(args, model_dir: Path, pairs) -> dict:
    if not _importable("vllm"):
        return {"status": "skipped", "reason": "vllm does not import (pip install -e .[cluster] on a GPU machine)"}
    backend = make_backend("vllm", model=str(model_dir), batch_size=len(pairs), max_new_tokens=64,
                           gpu_memory_utilization=0.5, max_model_len=8192)
    start = time.perf_counter()
    captions = list(backend.caption(pairs, progress=False))
    seconds = time.perf_counter() - start
    return {"status": "ok", "pairs": len(captions), "ok": sum(c.ok for c in captions), "seconds_incl_load": seconds,
            "pairs_per_s_incl_load": len(captions) / seconds}


def measure_editscore(args, pairs) -> dict:
    if not _importable("editscore"):
        return {"status": "skipped", "reason": "editscore does not import (pip install -e .[cluster] on a GPU machine)"}
    if not args.editscore_model:
        return {"status": "skipped", "reason": "EditScore's backbone (Qwen2.5-VL-7B) and LoRA come from the hub; "
                                               "pass local copies with --editscore-model and --editscore-lora"}
    from editcaption.data.scorers import make_scorer

    scorer = make_scorer("editscore", model_name_or_path=args.editscore_model, lora_path=args.editscore_lora)
    start = time.perf_counter()
    scores = [scorer.score(pair, pair["instruction"]) for pair in pairs.select(range(min(4, len(pairs))))]
    return {"status": "ok", "pairs": len(scores), "s_per_pair": (time.perf_counter() - start) / len(scores),
            "first": scores[0]}


def _importable(name: str) -> bool:
    try:
        import_module(name)
        return True
    except Exception:  # noqa: BLE001 - any import failure means "not available here"
        return False


def _failure(exc: BaseException) -> dict:
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"[:2000],
            "traceback": traceback.format_exc()[-4000:]}


def _free():
    import gc

    gc.collect()
    if CUDA:
        torch.cuda.empty_cache()


def save_model(preset: str, out: Path) -> Path:
    """The random model saved as a checkpoint folder (bf16 on CUDA), for the launched and vLLM parts."""
    model, processor = build_model(preset, torch.bfloat16 if CUDA else torch.float32)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    del model
    _free()
    return out


def measure(part: str, args, tmp: Path, dataset, pairs, pairs_dir: Path, model_dir: Path | None, peak) -> dict:
    """The figures of one part."""
    if part == "sft":
        return measure_sft(args, dataset, tmp / "sft", peak)
    if part == "dpo_ratio":
        return measure_dpo_ratio(args, model_dir, tmp / "dpo")
    if part == "zero3":
        return measure_zero3(args, model_dir, pairs_dir, tmp / "zero3")
    if part == "vllm":
        return measure_vllm(args, model_dir, pairs)
    return measure_editscore(args, pairs)


def run(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    env = environment()
    peak = peak_tflops(env["device"], args.peak_tflops) if CUDA or args.peak_tflops else None
    report = {"preset": args.preset, "image_size": args.image_size, "batch": args.batch, "steps": args.steps,
              "warmup": args.warmup, "environment": env, "parts": {}}
    skip = set(filter(None, args.skip.split(",")))
    with tempfile.TemporaryDirectory(dir=args.tmp or None) as tmp_name:
        tmp = Path(tmp_name)
        pairs = generate_pairs(max(16, 4 * args.batch), seed=0, size=args.image_size, progress=False)
        pairs_dir = tmp / "pairs"
        pairs.save_to_disk(str(pairs_dir))
        dataset = load_sft_dataset(pairs_dir)
        model_dir = None
        for part in PARTS:
            if part in skip:
                report["parts"][part] = {"status": "skipped", "reason": "--skip"}
                continue
            print(f"== {part}", flush=True)
            start = time.perf_counter()
            try:
                if part in ("dpo_ratio", "zero3", "vllm") and model_dir is None:
                    model_dir = save_model(args.preset, tmp / "model")
                report["parts"][part] = measure(part, args, tmp, dataset, pairs, pairs_dir, model_dir, peak)
            except Exception as exc:  # noqa: BLE001 - each part is reported on its own
                report["parts"][part] = _failure(exc)
            report["parts"][part]["part_wall_s"] = time.perf_counter() - start
            _free()
    out = Path(args.out) / f"{args.preset}-{'cuda' if CUDA else 'cpu'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n", encoding="utf-8")
    print(summary(report))
    print(f"wrote {out}")
    return report


def summary(report: dict) -> str:
    """A short table of the figures, one line per part or kernel."""
    env, parts = report["environment"], report["parts"]
    lines = [f"device {env['device']}; preset {report['preset']}, two {report['image_size']} px images per sample, "
             f"batch {report['batch']}, median of {report['steps']} steps after {report['warmup']}"]
    sft = parts.get("sft", {})
    if "kernels" in sft:
        lines.append(f"model FLOPs per token: counted {sft['flops_per_token_counted']:.3e}, 6N estimate "
                     f"{sft['flops_per_token_6N']:.3e}; {sft['tokens_per_sample']:.0f} tokens per sample; "
                     f"peak bf16 {sft['peak_bf16_tflops'] or 'unknown'} TFLOP/s")
        for name, k in sft["kernels"].items():
            if k["status"] != "ok":
                lines.append(f"  SFT {name:18s} {k['status']}: {k.get('reason') or k.get('error')}")
                continue
            mfu = f"{k['mfu']:.1%}" if k["mfu"] is not None else "n/a"
            memory = f"{k['peak_memory_gib']:.1f} GiB" if k["peak_memory_gib"] is not None else "n/a"
            lines.append(f"  SFT {name:18s} {k['tokens_per_s']:10.0f} tok/s {k['samples_per_s']:8.2f} samples/s "
                         f"{k['achieved_tflops']:8.2f} TFLOP/s  MFU {mfu:>6s}  peak memory {memory}")
    for part in PARTS[1:] if "kernels" in sft else PARTS:
        p = parts.get(part, {})
        if p.get("status") == "ok" and part == "dpo_ratio":
            lines.append(f"  HAE-DPO / DPO step time {p['ratio']:.3f} (fastest steps {p['min_ratio']:.3f}; "
                         f"{p['hae_s_per_step'] * 1e3:.1f} vs {p['dpo_s_per_step'] * 1e3:.1f} ms)")
        elif p.get("status") == "ok" and part == "zero3":
            lines.append(f"  ZeRO-3 launch ({p['config']}): step {p['global_step']}, loss {p['train_loss']:.3f}, "
                         f"{p['wall_s']:.0f} s wall")
        else:
            detail = {k: v for k, v in p.items() if k not in ("status", "traceback", "part_wall_s")}
            lines.append(f"  {part:22s} {p.get('status')}: {detail.get('reason') or detail.get('error') or detail}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None):
    defaults = DEFAULTS[CUDA]
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default=defaults["preset"], choices=sorted(PRESETS), help="tiny-model preset")
    p.add_argument("--image-size", type=int, default=defaults["image_size"], help="side of both images, px")
    p.add_argument("--batch", type=int, default=defaults["batch"], help="samples per step")
    p.add_argument("--steps", type=int, default=defaults["steps"], help="timed steps (median reported)")
    p.add_argument("--warmup", type=int, default=defaults["warmup"], help="untimed steps first")
    p.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak; default from the device name")
    p.add_argument("--skip", default="", help=f"comma-separated parts to skip: {', '.join(PARTS)}")
    p.add_argument("--editscore-model", default="", help="local EditScore backbone folder (Qwen2.5-VL-7B)")
    p.add_argument("--editscore-lora", default="", help="local EditScore LoRA folder")
    p.add_argument("--out", default=str(paths.repo_root() / "outputs" / "gpu_check"), help="folder of the JSON")
    p.add_argument("--tmp", default="", help="scratch folder (default: the system's)")
    args = p.parse_args(argv)
    unknown = set(filter(None, args.skip.split(","))) - set(PARTS)
    if unknown:
        p.error(f"--skip: unknown part(s) {sorted(unknown)}; parts are {', '.join(PARTS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    report = run(argv)
    return 1 if any(part.get("status") == "failed" or any(k.get("status") == "failed"
                                                           for k in part.get("kernels", {}).values())
                    for part in report["parts"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
