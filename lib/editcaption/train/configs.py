"""The training stages' schema: TRL's own config dataclasses, extended only where the method needs a field.

A recipe (params/recipes/<name>/sft.yaml or dpo.yaml) is a flat YAML of these fields, read by TRL's `TrlParser`
as in alignment-handbook: `CaptionSFTConfig` (TRL's `SFTConfig`) or `HAEDPOConfig` (TRL's `DPOConfig`), plus
`VisionModelConfig` (TRL's `ModelConfig`). Every default is the dataclass's: TRL's, or the one written here.

What is added or changed, and why:
- `dataset_path` (both stages): the `datasets` folder to train on (notebooks 01 and 03 write them).
- `global_batch_size` (both stages): the paper gives global batches (appendix C: 512 SFT, 128 DPO); the
  gradient-accumulation steps follow from it and the number of processes when the config is built.
- `max_length` (both stages) defaults to None, and it *drops* longer samples (listed in dropped_samples.jsonl)
  instead of truncating them: TRL's truncation would cut image tokens. The trainer then runs with None.
- `HAEDPOConfig`: the margin's `hae_*` fields (eq. 3), the reference checkpoint, and what to do with invalid
  preference rows.
- `VisionModelConfig`: freezing the vision tower or merger, the image processor's pixel budget; `dtype`
  defaults to "auto" (the checkpoint's own) and `lora_target_modules` to ["all-linear"] (PEFT's "all-linear").
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from trl import DPOConfig, ModelConfig, SFTConfig

from editcaption.config import ConfigError
from editcaption.data.preference_rows import BAD_ROWS

# hae_variant -> (γ_st on, γ_h on). Table 4's rows (dpo, st_only, h_only, hae) and two controls: `const`, plain DPO
# with one margin for every pair (hae_constant_margin, notebook 04 sets HAE-DPO's mean margin: what the margin's
# adaptivity adds beyond its size), and `nll_only`, the chosen answers' NLL without the preference term (what the
# preference term adds beyond imitating the corrections).
VARIANTS = {"dpo": (0.0, 0.0), "st_only": (1.0, 0.0), "h_only": (0.0, 1.0), "hae": (1.0, 1.0),
            "const": (0.0, 0.0), "nll_only": (0.0, 0.0)}
TABLE4_VARIANTS = ("dpo", "st_only", "h_only", "hae")
CONTROLS = ("const", "nll_only")
HARDNESS_LOGP = ("mean", "sum")
MAX_LENGTH_HELP = ("samples with more tokens are dropped and listed in dropped_samples.jsonl, never truncated "
                   "(truncation would cut image tokens); null keeps every sample")
GLOBAL_BATCH_HELP = ("samples per optimizer step over all processes; gradient_accumulation_steps follows from it "
                     "(it must be a multiple of per_device_train_batch_size x processes); null keeps "
                     "gradient_accumulation_steps as set")


def world_size() -> int:
    """Number of training processes (set by accelerate launch / torchrun; 1 when run directly)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def gradient_accumulation(global_batch_size: int | None, per_device_batch_size: int, n_processes: int) -> int | None:
    """Accumulation steps so that per_device × processes × steps = global batch (None without a global batch)."""
    if per_device_batch_size < 1 or n_processes < 1:
        raise ConfigError(
            f"per_device_train_batch_size ({per_device_batch_size}) and world size ({n_processes}) must be >= 1")
    if global_batch_size is None:
        return None
    per_step = per_device_batch_size * n_processes
    if global_batch_size < 1 or global_batch_size % per_step:
        raise ConfigError(
            f"global_batch_size {global_batch_size} is not a positive multiple of per_device_train_batch_size "
            f"{per_device_batch_size} x world size {n_processes} = {per_step}; "
            f"pick a global batch divisible by {per_step}")
    return global_batch_size // per_step


def cpu_ddp_backend() -> str | None:
    """"gloo" for several processes without CUDA (else accelerate sees one process under DeepSpeed); None = default."""
    import torch

    return "gloo" if world_size() > 1 and not torch.cuda.is_available() else None


def _settle_batch_and_backend(config) -> None:
    """Set gradient_accumulation_steps from global_batch_size, and gloo for several CPU processes."""
    steps = gradient_accumulation(config.global_batch_size, config.per_device_train_batch_size, world_size())
    if steps is not None:
        if config.gradient_accumulation_steps not in (1, steps):
            raise ConfigError(f"global_batch_size {config.global_batch_size} needs gradient_accumulation_steps "
                              f"{steps}, but it is set to {config.gradient_accumulation_steps}; set one of the two")
        config.gradient_accumulation_steps = steps
    if config.ddp_backend is None:
        config.ddp_backend = cpu_ddp_backend()


@dataclass
class CaptionSFTConfig(SFTConfig):
    """TRL's SFTConfig plus the SFT set's folder and the global batch; `max_length` drops, never truncates."""

    dataset_path: str | None = field(
        default=None, metadata={"help": "`datasets` folder of TRL rows {images, prompt, completion} or edit pairs"})
    global_batch_size: int | None = field(default=None, metadata={"help": GLOBAL_BATCH_HELP})
    max_length: int | None = field(default=None, metadata={"help": MAX_LENGTH_HELP})

    def __post_init__(self):
        _settle_batch_and_backend(self)
        super().__post_init__()


@dataclass
class HAEDPOConfig(DPOConfig):
    """TRL's DPOConfig plus the HAE margin (variant, γ_st, γ_h, τ, how ℓ_ref sums over tokens), the preference
    set's folder, the reference checkpoint and the global batch; `max_length` drops, never truncates."""

    dataset_path: str | None = field(default=None, metadata={"help": "`datasets` folder of preference rows "
                                                                     "(records.PREFERENCE_FEATURES)"})
    ref_model_name_or_path: str | None = field(
        default=None, metadata={"help": "frozen reference checkpoint; null = model_name_or_path (the SFT model)"})
    bad_rows: str = field(default="error", metadata={
        "help": "invalid preference rows: error (stop, naming the row) or skip (leave out, count, list in "
                "skipped_preferences.jsonl)", "choices": list(BAD_ROWS)})
    hae_variant: str = field(default="hae", metadata={
        "help": "table 4 row: dpo (no margin), st_only (severity x type), h_only (hardness), hae (both); or a "
                "control: const (DPO with hae_constant_margin for every pair), nll_only (the chosen answers' NLL, "
                "no preference term)", "choices": list(VARIANTS)})
    hae_constant_margin: float = field(default=0.0, metadata={
        "help": "the margin of every pair for hae_variant const (notebook 04 sets HAE-DPO's mean margin); must be "
                "0 for the other variants"})
    hae_gamma_st: float = field(default=1.0, metadata={"help": "γ_st, weight of the severity x type term "
                                                               "(used by st_only and hae); appendix C: 1.0"})
    hae_gamma_h: float = field(default=1.0, metadata={"help": "γ_h, weight of the hardness term "
                                                              "(used by h_only and hae); appendix C: 1.0"})
    hae_tau: float = field(default=1.0, metadata={"help": "hardness temperature τ > 0; appendix C: 1.0"})
    hae_hardness_logp: str = field(default="mean", metadata={
        "help": "ℓ_ref of the hardness term: mean (per completion token) or sum", "choices": list(HARDNESS_LOGP)})
    global_batch_size: int | None = field(default=None, metadata={"help": GLOBAL_BATCH_HELP})
    max_length: int | None = field(default=None, metadata={"help": MAX_LENGTH_HELP})

    def __post_init__(self):
        for name, value, allowed in (("hae_variant", self.hae_variant, VARIANTS),
                                     ("hae_hardness_logp", self.hae_hardness_logp, HARDNESS_LOGP),
                                     ("bad_rows", self.bad_rows, BAD_ROWS)):
            if value not in allowed:
                raise ConfigError(f"{name} {value!r} is not one of {sorted(allowed)}")
        if self.hae_tau <= 0:
            raise ConfigError(f"hae_tau must be > 0, got {self.hae_tau}")
        if self.hae_variant == "const" and not self.hae_constant_margin > 0:
            raise ConfigError(f"hae_variant const needs hae_constant_margin > 0 (HAE-DPO's mean margin), got "
                              f"{self.hae_constant_margin}")
        if self.hae_variant != "const" and self.hae_constant_margin:
            raise ConfigError(f"hae_constant_margin {self.hae_constant_margin} is only used by hae_variant const "
                              f"(this run is {self.hae_variant}); leave it 0")
        _settle_batch_and_backend(self)
        super().__post_init__()

    @property
    def hae_gammas(self) -> tuple[float, float]:
        """(γ_st, γ_h) in effect for the variant (a term the variant turns off has weight 0)."""
        on_st, on_h = VARIANTS[self.hae_variant]
        return on_st * self.hae_gamma_st, on_h * self.hae_gamma_h


@dataclass
class VisionModelConfig(ModelConfig):
    """TRL's ModelConfig (checkpoint, dtype, attention, LoRA, quantisation) plus what a vision-language model needs."""

    dtype: str | None = field(default="auto", metadata={
        "help": "dtype the weights load in; auto = the checkpoint's own", "choices": ["auto", "bfloat16", "float16",
                                                                                      "float32"]})
    lora_target_modules: list[str] | None = field(default_factory=lambda: ["all-linear"], metadata={
        "help": "PEFT target_modules: all-linear or a list of module names"})
    freeze_vision_tower: bool = field(default=False, metadata={
        "help": "keep the vision encoder's weights fixed (no LoRA there either)"})
    freeze_merger: bool = field(default=False, metadata={
        "help": "keep the vision-to-language mergers fixed (no LoRA there either)"})
    min_pixels: int | None = field(default=None, metadata={
        "help": "per-image pixel floor for the image processor; null = the processor's"})
    max_pixels: int | None = field(default=None, metadata={
        "help": "per-image pixel budget for the image processor; null = the processor's"})
