"""Shared training helpers (SFT and HAE-DPO): the entry point, checkpoints, freezing, LoRA and model loading.

The stages' fields are the config dataclasses of `configs` (TRL's SFTConfig / DPOConfig / ModelConfig, extended);
recipes holding them are read by `recipe`.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from pathlib import Path
from typing import Any, Callable

from editcaption import paths
from editcaption.config import ConfigError
from editcaption.train.configs import world_size
from editcaption.train.recipe import parse_stage_args


def finish_distributed() -> None:
    """Wait for every process, then tear the process group down before the interpreter exits: left to
    interpreter shutdown, gloo/DeepSpeed threads were seen to abort a rank ("terminate called without an
    active exception") after training had finished and saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_entry_point(stage: str, argv: list[str] | None, train: Callable[..., Any]) -> int:
    """`python -m editcaption.train.<stage> --config RECIPE [--field value ...]`: parse the stage's configs with
    TRL's TrlParser (a bad key or value exits with the message), train, then end the process cleanly."""
    args, model_args = parse_stage_args(stage, argv)
    train(args, model_args)
    return exit_entry_point(0)


def exit_entry_point(code: int = 0) -> int:
    """End a launched training process: tear the process group down, flush output, and under a
    multi-process launcher leave with os._exit. Interpreter shutdown after a finished, saved 2-process
    ZeRO-3 run on CPU was seen to abort a rank about 1 time in 3 ("terminate called without an active
    exception", a native thread still joinable); nothing is left to do by then, so teardown is skipped."""
    finish_distributed()
    sys.stdout.flush()
    sys.stderr.flush()
    if world_size() > 1:
        os._exit(code)
    return code


def check_output_dir(args) -> Path:
    """The run's folder; TrainingArguments' own default ("trainer_output" in the working directory) is refused."""
    if not args.output_dir or Path(args.output_dir).name == "trainer_output":
        raise ValueError("set output_dir (the notebooks set outputs/<run_name>/<stage>)")
    return Path(args.output_dir)


def effective_config(args, model_args) -> dict[str, Any]:
    """The fields a run trained with, after the dataclasses settled them (JSON values only)."""
    out = {}
    for name, value in {**dataclasses.asdict(model_args), **args.to_dict()}.items():
        if isinstance(value, (str, int, float, bool, type(None))) or (
                isinstance(value, list) and all(isinstance(v, (str, int, float)) for v in value)):
            out[name] = value
    return out


def describe_batch(per_device_batch_size: int, n_processes: int, accumulation: int) -> str:
    total = per_device_batch_size * n_processes * accumulation
    return (f"global batch {total} = {per_device_batch_size} per device x {n_processes} process(es) "
            f"x {accumulation} gradient-accumulation step(s)")


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def saved_checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Every complete `checkpoint-N` folder the trainer saved (its trainer_state.json, written last, parses) as
    (N, folder), by step; [] when there is none."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            try:
                json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # interrupted while saving
            found.append((int(match.group(1)), child))
    return sorted(found)


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (its trainer_state.json, written last, parses); else None."""
    found = saved_checkpoints(output_dir)
    return found[-1][1] if found else None


def apply_pixel_budget(processor, min_pixels: int | None, max_pixels: int | None) -> None:
    """Set the image processor's per-image pixel range (Qwen-VL: `size` shortest_edge/longest_edge in pixels)."""
    if min_pixels is None and max_pixels is None:
        return
    image_processor = processor.image_processor
    size = dict(image_processor.size)
    low = min_pixels if min_pixels is not None else size.get("shortest_edge")
    high = max_pixels if max_pixels is not None else size.get("longest_edge")
    if low is None or high is None or not 0 < low <= high:
        raise ConfigError(f"min_pixels {low} and max_pixels {high} must satisfy 0 < min_pixels <= max_pixels")
    image_processor.size = {"shortest_edge": int(low), "longest_edge": int(high)}


def vision_parts(model) -> dict[str, list[str]]:
    """Parameter names of the vision tower and of the vision-to-language mergers (Qwen-VL `visual` module)."""
    parts: dict[str, list[str]] = {"vision_tower": [], "merger": []}
    for name, _ in model.named_parameters():
        if ".visual." not in f".{name}":
            continue
        parts["merger" if "merger" in f".{name}".split(".visual.", 1)[1] else "vision_tower"].append(name)
    return parts


def frozen_prefixes(model, freeze_vision_tower: bool, freeze_merger: bool) -> list[str]:
    """Module-name prefixes of the parts to freeze (e.g. model.visual.blocks, model.visual.merger)."""
    parts = vision_parts(model)
    chosen = [p for p, flag in (("vision_tower", freeze_vision_tower), ("merger", freeze_merger)) if flag]
    prefixes: set[str] = set()
    for part in chosen:
        if not parts[part]:
            raise ConfigError(
                f"freeze_{part} is set but {type(model).__name__} has no {part} parameters under '.visual.'")
        for name in parts[part]:
            head, tail = f".{name}".split(".visual.", 1)
            prefixes.add(f"{head}.visual.{tail.split('.', 1)[0]}".lstrip("."))
    return sorted(prefixes)


def freeze(model, prefixes: list[str]) -> int:
    """Turn off gradients under the given module prefixes; returns the number of frozen parameters."""
    count = 0
    for name, param in model.named_parameters():
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            param.requires_grad_(False)
            count += param.numel()
    return count


def lora_config(model_args, model, excluded_prefixes: list[str]):
    """TRL's LoraConfig from the model config's lora_* fields (`get_peft_config`); linear layers under frozen parts
    get no adapter. A one-name list ["all-linear"] (how the command line gives it) is PEFT's "all-linear"."""
    import torch
    from trl import get_peft_config

    config = get_peft_config(model_args)
    if config.target_modules == {"all-linear"} or config.target_modules == ["all-linear"]:
        config.target_modules = "all-linear"
    excluded = [
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.startswith(p + ".") for p in excluded_prefixes)
    ]
    config.exclude_modules = excluded or None
    return config


def _zero3_aware_transpose() -> None:
    """Make transformers' shape-checked Transpose (Qwen3-VL-MoE experts) compare with a ZeRO-3 parameter's full shape.

    Under ZeRO-3 init a parameter's `.shape` is (0,) and its full shape is `ds_shape`; transformers 5.24 compares
    with `.shape`, so a checkpoint already in the model's layout (the tiny MoE, any MoE checkpoint saved by
    transformers, e.g. our SFT output) is transposed by mistake and loading fails with a size mismatch.
    """
    from transformers import core_model_loading

    transpose = getattr(core_model_loading, "Transpose", None)
    if transpose is None or getattr(transpose.convert, "zero3_aware", False):
        return
    original = transpose.convert

    def convert(self, input_dict, source_patterns, target_patterns, **kwargs):
        if self.check_dims and "model" in kwargs and "full_layer_name" in kwargs:
            param = kwargs["model"].get_parameter(kwargs["full_layer_name"])
            tensors = next(iter(input_dict.values()))
            tensor = tensors[0] if isinstance(tensors, list) else tensors
            if hasattr(param, "ds_shape") and tensor.shape == param.ds_shape:
                return {self.get_target_pattern(input_dict, source_patterns, target_patterns): tensor}
        return original(self, input_dict, source_patterns, target_patterns, **kwargs)

    convert.zero3_aware = True
    transpose.convert = convert


def model_kwargs(model_args) -> dict[str, Any]:
    """`from_pretrained` keyword arguments from the model config: revision, dtype, attention, and TRL's
    quantisation config when load_in_4bit / load_in_8bit is set."""
    from trl import get_quantization_config

    kwargs: dict[str, Any] = {"revision": model_args.model_revision, "dtype": model_args.dtype}
    if model_args.attn_implementation:
        kwargs["attn_implementation"] = model_args.attn_implementation
    quantization = get_quantization_config(model_args)
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    return kwargs


def load_for_training(model_args):
    """Model (frozen parts applied) + processor (pixel budget applied) + LoraConfig or None, from a
    `configs.VisionModelConfig`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.integrations import is_deepspeed_zero3_enabled

    if not model_args.model_name_or_path:
        raise ConfigError("model_name_or_path is not set (the notebook or the command line gives the checkpoint)")
    source = paths.model_source(model_args.model_name_or_path)
    processor = AutoProcessor.from_pretrained(source, revision=model_args.model_revision)
    apply_pixel_budget(processor, model_args.min_pixels, model_args.max_pixels)
    if is_deepspeed_zero3_enabled():
        _zero3_aware_transpose()
    model = AutoModelForImageTextToText.from_pretrained(source, **model_kwargs(model_args))
    prefixes = frozen_prefixes(model, model_args.freeze_vision_tower, model_args.freeze_merger)
    peft_config = lora_config(model_args, model, prefixes) if model_args.use_peft else None
    frozen = freeze(model, prefixes)
    if prefixes:
        print(f"frozen: {', '.join(prefixes)} ({frozen:,} parameters)")
    return model, processor, peft_config


def merge_lora(adapter_dir: str | Path, out_dir: str | Path, *, base_model: str | Path | None = None) -> Path:
    """Merge a saved LoRA adapter into its base model and save a full model (+ processor) in out_dir."""
    from peft import PeftConfig, PeftModel
    from transformers import AutoModelForImageTextToText, AutoProcessor

    adapter_dir, out = Path(adapter_dir), Path(out_dir)
    if not (adapter_dir / "adapter_config.json").is_file():
        raise FileNotFoundError(f"{adapter_dir} has no adapter_config.json; is it a LoRA adapter folder?")
    base = str(base_model or PeftConfig.from_pretrained(str(adapter_dir)).base_model_name_or_path)
    model = AutoModelForImageTextToText.from_pretrained(base, dtype="auto")
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    merged.save_pretrained(out)
    processor_source = adapter_dir if (adapter_dir / "processor_config.json").is_file() else base
    AutoProcessor.from_pretrained(str(processor_source)).save_pretrained(out)
    return out
