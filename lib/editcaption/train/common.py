"""Shared training helpers (SFT and HAE-DPO): profile → parameters, batch arithmetic, checkpoints, model loading.

A stage reads only the keys its spec declares from a flat profile and ignores the rest. A key may be
written plain (`learning_rate`) or with the stage prefix (`sft_learning_rate`); the prefixed form wins,
so one profile holds both the SFT and the HAE-DPO learning rate. `--key value` overrides win over both.
"""
from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from editcaption import paths
from editcaption.config import ConfigError, profile_path


@dataclass(frozen=True)
class Key:
    """One training parameter: accepted types (None in `types` allows null), default, one-line help."""

    types: tuple
    default: Any
    help: str

    def type_names(self) -> str:
        return " or ".join("null" if t is None else t.__name__ for t in self.types)


# Keys shared by every training stage. Names follow transformers' TrainingArguments / TRL where one exists.
TRAINING_KEYS: dict[str, Key] = {
    "model_name_or_path": Key((str,), None, "checkpoint folder or hub id to start from (required)"),
    "output_dir": Key((str, None), None, "checkpoints, final model, metrics; null = outputs/<run_name>/<stage>"),
    "run_name": Key((str, None), None, "the profile's run name (names the default output_dir)"),
    "learning_rate": Key((float,), 1e-5, "peak learning rate (AdamW)"),
    "num_train_epochs": Key((float,), 1.0, "epochs over the training set (ignored when max_steps > 0)"),
    "max_steps": Key((int,), -1, "optimizer steps; -1 = use num_train_epochs"),
    "per_device_train_batch_size": Key((int,), 1, "samples per process per micro-step"),
    "global_batch_size": Key((int, None), None, "samples per optimizer step, all processes; null = per_device x world"),
    "lr_scheduler_type": Key((str,), "cosine", "learning-rate schedule"),
    "warmup_ratio": Key((float,), 0.03, "share of the steps spent warming up the learning rate"),
    "weight_decay": Key((float,), 0.0, "AdamW weight decay"),
    "max_grad_norm": Key((float,), 1.0, "gradient clipping norm"),
    "bf16": Key((bool,), False, "bfloat16 mixed precision (GPU)"),
    "gradient_checkpointing": Key((bool,), False, "recompute activations in backward (GPU memory)"),
    "logging_steps": Key((int,), 10, "log loss and learning rate every n steps"),
    "save_steps": Key((int,), 500, "write a checkpoint every n steps"),
    "save_total_limit": Key((int, None), 2, "checkpoints kept; null = all"),
    "seed": Key((int,), 0, "seed of model init (LoRA), data order and dropout"),
    "dataloader_num_workers": Key((int,), 0, "data-loading worker processes"),
    "report_to": Key((str,), "none", "experiment tracker (none, tensorboard, wandb)"),
    "model_dtype": Key((str,), "auto", "dtype the weights load in: auto, bfloat16, float32"),
    "attn_implementation": Key((str, None), None, "sdpa, eager, flash_attention_2; null = model default"),
    "use_lora": Key((bool,), False, "train LoRA adapters instead of all weights"),
    "lora_r": Key((int,), 16, "LoRA rank"),
    "lora_alpha": Key((int,), 32, "LoRA scaling numerator"),
    "lora_dropout": Key((float,), 0.05, "LoRA dropout"),
    "lora_target_modules": Key((str, list), "all-linear", "PEFT target_modules: 'all-linear' or a list of names"),
    "freeze_vision_tower": Key((bool,), False, "keep the vision encoder's weights fixed (no LoRA there either)"),
    "freeze_merger": Key((bool,), False, "keep the vision-to-language mergers fixed (no LoRA there either)"),
    "min_pixels": Key((int, None), None, "per-image pixel floor for the image processor; null = processor's"),
    "max_pixels": Key((int, None), None, "per-image pixel budget for the image processor; null = processor's"),
    "max_length": Key((int, None), None, "samples with more tokens are dropped and listed (never truncated)"),
}


def _type_ok(types: tuple, value: Any) -> bool:
    for expected in types:
        if expected is None and value is None:
            return True
        if expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return True
        if expected is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if expected is list and isinstance(value, list) and all(isinstance(v, str) for v in value):
            return True
        if expected in (str, bool) and isinstance(value, expected):
            return True
    return False


def _check(key: str, value: Any, spec: Key, where: str) -> Any:
    if not _type_ok(spec.types, value):
        hint = " (YAML reads 1e-5 as text: write 1.0e-5)" if float in spec.types and isinstance(value, str) else ""
        found = f"{type(value).__name__} {value!r}"
        raise ConfigError(f"{where}: key '{key}' expects {spec.type_names()}, found {found}{hint}")
    return float(value) if spec.types[0] is float and value is not None else value


def _parse_cli_value(key: str, text: str, spec: Key) -> Any:
    """A command-line string → the key's type ('null'/'none' → None where allowed; lists as YAML or a,b,c)."""
    lowered = text.strip().lower()
    if None in spec.types and lowered in ("null", "none", "~"):
        return None
    if list in spec.types and ("," in text or text.startswith("[")):
        try:
            value = yaml.safe_load(text) if text.startswith("[") else [part.strip() for part in text.split(",")]
        except yaml.YAMLError:
            value = None
        if isinstance(value, list):
            return value
    for expected in spec.types:
        try:
            if expected is bool and lowered in ("true", "false"):
                return lowered == "true"
            if expected is int:
                return int(text)
            if expected is float:
                return float(text)
        except ValueError:
            continue
        if expected is str:
            return text
    raise ConfigError(f"command line: key '{key}' expects {spec.type_names()}, found {text!r}")


def load_training_params(
    profile: str | Path | Mapping[str, Any] | None,
    overrides: Mapping[str, Any] | None = None,
    *,
    spec: Mapping[str, Key] = TRAINING_KEYS,
    prefix: str = "",
) -> dict[str, Any]:
    """Resolve every key of `spec` from defaults < profile `key` < profile `<prefix>key` < overrides.

    `profile` is a YAML path or an already-loaded mapping; keys the spec does not know are ignored
    (they belong to other notebooks). Override values may be strings from the command line.
    """
    where = "profile"
    values: Mapping[str, Any] = {}
    if isinstance(profile, (str, Path)):
        where = str(profile)
        if not Path(profile).is_file():
            raise ConfigError(f"profile {profile} not found")
        try:
            values = yaml.safe_load(Path(profile).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{profile}: not valid YAML: {exc}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{profile}: a profile must be a flat mapping, found {type(values).__name__}")
    elif profile is not None:
        values = profile

    params = {key: s.default for key, s in spec.items()}
    for key, s in spec.items():
        for name in (key, prefix + key) if prefix and not key.startswith(prefix) else (key,):
            if name in values:
                params[key] = _check(name, values[name], s, where)
    for name, value in (overrides or {}).items():
        key = name[len(prefix):] if prefix and name.startswith(prefix) and name[len(prefix):] in spec else name
        if key not in spec:
            raise ConfigError(f"command line: unknown key '{name}'; known keys: {', '.join(sorted(spec))}")
        if isinstance(value, str):
            value = _parse_cli_value(name, value, spec[key])
        params[key] = _check(name, value, spec[key], "command line")
    return params


def parse_overrides(argv: list[str]) -> dict[str, str]:
    """`--key value` / `--key=value` pairs → {key: "value"} (typed later against the spec)."""
    overrides: dict[str, str] = {}
    index = 0
    while index < len(argv):
        token = argv[index]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"command line: expected --key value, found {token!r}")
        if "=" in token:
            key, value = token[2:].split("=", 1)
            index += 1
        else:
            if index + 1 >= len(argv):
                raise ConfigError(f"command line: {token} has no value")
            key, value = token[2:], argv[index + 1]
            index += 2
        overrides[key.replace("-", "_")] = value
    return overrides


def world_size() -> int:
    """Number of training processes (set by accelerate launch / torchrun; 1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def cpu_ddp_backend() -> str | None:
    """"gloo" for several processes without CUDA (else accelerate sees one process under DeepSpeed); None = default."""
    import torch

    return "gloo" if world_size() > 1 and not torch.cuda.is_available() else None


def gradient_accumulation(global_batch_size: int | None, per_device_batch_size: int, n_processes: int) -> int:
    """Accumulation steps so that per_device × processes × steps = global batch; it must divide exactly."""
    if per_device_batch_size < 1 or n_processes < 1:
        raise ConfigError(
            f"per_device_train_batch_size ({per_device_batch_size}) and world size ({n_processes}) must be >= 1")
    per_step = per_device_batch_size * n_processes
    if global_batch_size is None:
        return 1
    if global_batch_size < 1 or global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not a positive multiple of per_device_train_batch_size "
            f"{per_device_batch_size} x world size {n_processes} = {per_step}; "
            f"pick a global batch divisible by {per_step}"
        )
    return global_batch_size // per_step


def finish_distributed() -> None:
    """Wait for every process, then tear the process group down before the interpreter exits: left to
    interpreter shutdown, gloo/DeepSpeed threads were seen to abort a rank ("terminate called without an
    active exception") after training had finished and saved."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def run_entry_point(argv: list[str] | None, *, description: str, epilog: str, spec: Mapping[str, Key], prefix: str,
                    train: Callable[[dict[str, Any]], Any], check: Callable[[dict[str, Any]], None] | None = None) -> int:
    """`python -m editcaption.train.<stage> --profile P [--key value ...]`: resolve the stage's parameters
    (a bad key or value exits with the message), train, then end the process cleanly."""
    import argparse

    parser = argparse.ArgumentParser(description=description, epilog=epilog)
    parser.add_argument("--profile", required=True, help="profile name (params/<name>.yaml) or YAML path")
    known, rest = parser.parse_known_args(argv)
    try:
        params = load_training_params(profile_path(known.profile), parse_overrides(rest), spec=spec, prefix=prefix)
        if check is not None:
            check(params)
    except ConfigError as exc:
        parser.error(str(exc))
    train(params)
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


def trainer_arguments(params: Mapping[str, Any], output_dir: Path, accumulation: int) -> dict[str, Any]:
    """The TrainingArguments fields every stage sets from its parameters (SFTConfig and HAEDPOConfig add
    their own); max_length=None because over-long samples are dropped beforehand, never truncated."""
    if not 0 <= params["warmup_ratio"] < 1:
        raise ValueError(f"warmup_ratio must be in [0, 1), found {params['warmup_ratio']}")
    return dict(
        output_dir=str(output_dir),
        run_name=params["run_name"],
        learning_rate=params["learning_rate"],
        num_train_epochs=params["num_train_epochs"],
        max_steps=params["max_steps"],
        per_device_train_batch_size=params["per_device_train_batch_size"],
        gradient_accumulation_steps=accumulation,
        lr_scheduler_type=params["lr_scheduler_type"],
        warmup_steps=params["warmup_ratio"],  # transformers 5: a float < 1 is a ratio of the total steps
        weight_decay=params["weight_decay"],
        max_grad_norm=params["max_grad_norm"],
        bf16=params["bf16"],
        gradient_checkpointing=params["gradient_checkpointing"],
        logging_steps=params["logging_steps"],
        save_strategy="steps",
        save_steps=params["save_steps"],
        save_total_limit=params["save_total_limit"],
        seed=params["seed"],
        data_seed=params["seed"],
        dataloader_num_workers=params["dataloader_num_workers"],
        report_to=params["report_to"],
        ddp_backend=cpu_ddp_backend(),
        max_length=None,
    )


def describe_batch(per_device_batch_size: int, n_processes: int, accumulation: int) -> str:
    total = per_device_batch_size * n_processes * accumulation
    return (f"global batch {total} = {per_device_batch_size} per device x {n_processes} process(es) "
            f"x {accumulation} gradient-accumulation step(s)")


_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest complete `checkpoint-N` folder (its trainer_state.json, written last, parses); else None."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return None
    found = []
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if match and child.is_dir():
            try:
                json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue  # interrupted while saving
            found.append((int(match.group(1)), child))
    return max(found)[1] if found else None


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


def lora_config(params: Mapping[str, Any], model, excluded_prefixes: list[str]):
    """A PEFT LoraConfig from the lora_* keys; linear layers under frozen parts get no adapter."""
    import torch
    from peft import LoraConfig

    excluded = [
        name for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and any(name.startswith(p + ".") for p in excluded_prefixes)
    ]
    return LoraConfig(
        r=params["lora_r"],
        lora_alpha=params["lora_alpha"],
        lora_dropout=params["lora_dropout"],
        target_modules=params["lora_target_modules"],
        exclude_modules=excluded or None,
        task_type="CAUSAL_LM",
    )


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


def load_for_training(params: Mapping[str, Any]):
    """Model (frozen parts applied) + processor (pixel budget applied) + LoraConfig or None."""
    from transformers import AutoModelForImageTextToText, AutoProcessor
    from transformers.integrations import is_deepspeed_zero3_enabled

    source = paths.model_source(params["model_name_or_path"])
    processor = AutoProcessor.from_pretrained(source)
    apply_pixel_budget(processor, params["min_pixels"], params["max_pixels"])
    kwargs = {"dtype": params["model_dtype"]}
    if params["attn_implementation"]:
        kwargs["attn_implementation"] = params["attn_implementation"]
    if is_deepspeed_zero3_enabled():
        _zero3_aware_transpose()
    model = AutoModelForImageTextToText.from_pretrained(source, **kwargs)
    prefixes = frozen_prefixes(model, params["freeze_vision_tower"], params["freeze_merger"])
    peft_config = lora_config(params, model, prefixes) if params["use_lora"] else None
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
