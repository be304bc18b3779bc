"""Stage 2 HAE-DPO (paper §3.2, eqs. 2–3): TRL's sigmoid DPO loss with a per-sample margin m_i.

    L = −log σ(β·[log πθ(y_w)/πref(y_w) − log πθ(y_r)/πref(y_r)] − m_i)
    m_i = γ_st · s_i · c(t_i) + γ_h · σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ)

    python -m editcaption.train.hae_dpo --profile params/X.yaml [--key value ...]
    accelerate launch --config_file params/accelerate/zero3.yaml -m editcaption.train.hae_dpo --profile ...

`HAEDPOTrainer` lets TRL's `DPOTrainer` run its two forward passes (policy, frozen reference) and log its
metrics, records the per-token log-probabilities of both passes with forward hooks, and returns the margin
loss built from them: no extra forward pass, and the logged rewards stay TRL's true DPO rewards. The margin
terms are logged beside them (`hae/...`). `dpo_variant` picks a row of table 4: dpo (γ_st = γ_h = 0),
st_only (γ_h = 0), h_only (γ_st = 0), hae (both).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
import torch.nn.functional as F
from trl import DPOConfig, DPOTrainer

from editcaption import paths
from editcaption.config import ConfigError
from editcaption.data.preference_rows import BAD_ROWS, load_preferences
from editcaption.rubric import ERROR_TYPES, SEVERITIES
from editcaption.train.common import (
    TRAINING_KEYS,
    Key,
    cpu_ddp_backend,
    describe_batch,
    gradient_accumulation,
    last_checkpoint,
    load_for_training,
    run_entry_point,
    trainer_arguments,
    world_size,
)
from editcaption.train.margin import completion_logps, hae_margin, label_indices
from editcaption.train.sft import drop_long_samples, sample_lengths

STAGE = "04_hae_dpo"
PREFIX = "dpo_"
VARIANTS = {"dpo": (0.0, 0.0), "st_only": (1.0, 0.0), "h_only": (0.0, 1.0), "hae": (1.0, 1.0)}  # γ_st, γ_h on/off
HARDNESS_LOGP = ("mean", "sum")
LABEL_COLUMNS = ("severity", "error_type")  # dataset columns carried through TRL's preprocessing
SEVERITY_KEY, ERROR_TYPE_KEY = "hae_severity", "hae_error_type"  # their index tensors in a collated batch
SKIPPED_FILE = "skipped_preferences.jsonl"
DROPPED_FILE = "dropped_samples.jsonl"
METRICS_FILE = "train_metrics.json"

DPO_KEYS: dict[str, Key] = {
    **TRAINING_KEYS,
    "learning_rate": Key((float,), 5e-6, "peak learning rate (AdamW); appendix C: 5e-6"),
    "num_train_epochs": Key((float,), 4.0, "epochs over the preference set (unless max_steps > 0); appendix C: 4"),
    "preference_data_path": Key((str,), None, "`datasets` folder of preference rows (records.PREFERENCE_FEATURES)"),
    "dpo_ref_model": Key((str, None), None, "frozen reference checkpoint; null = model_name_or_path (the SFT model)"),
    "dpo_variant": Key((str,), "hae",
                       "table 4 row: dpo (no margin), st_only (severity x type), h_only (hardness), hae (both)"),
    "beta": Key((float,), 0.1, "DPO β"),
    "chosen_nll_weight": Key((float,), 0.0, "weight of TRL's 'sft' loss term (the chosen answer's NLL per token) "
                                            "added to the margin loss; 0 = the paper's loss"),
    "hae_tau": Key((float,), 1.0, "hardness temperature τ"),
    "hae_gamma_st": Key((float,), 1.0, "γ_st, weight of the severity x type term"),
    "hae_gamma_h": Key((float,), 1.0, "γ_h, weight of the hardness term"),
    "hae_hardness_logp": Key((str,), "mean", "ℓ_ref of the hardness term: mean (per completion token) or sum"),
    "preference_bad_rows": Key((str,), "error", "invalid preference rows: error (stop, naming the row) or skip "
                                                "(leave out, count, list in skipped_preferences.jsonl)"),
}


@dataclass
class HAEDPOConfig(DPOConfig):
    """DPOConfig plus the HAE margin: the variant, γ_st, γ_h, τ and how ℓ_ref is aggregated over tokens."""

    hae_variant: str = field(default="hae", metadata={"help": f"one of {sorted(VARIANTS)}"})
    hae_gamma_st: float = field(default=1.0, metadata={"help": "γ_st (used by st_only and hae)"})
    hae_gamma_h: float = field(default=1.0, metadata={"help": "γ_h (used by h_only and hae)"})
    hae_tau: float = field(default=1.0, metadata={"help": "hardness temperature τ > 0"})
    hae_hardness_logp: str = field(default="mean", metadata={"help": "mean or sum of ref log-probs per completion"})

    def __post_init__(self):
        if self.hae_variant not in VARIANTS:
            raise ValueError(f"hae_variant {self.hae_variant!r} is not one of {sorted(VARIANTS)}")
        if self.hae_hardness_logp not in HARDNESS_LOGP:
            raise ValueError(f"hae_hardness_logp {self.hae_hardness_logp!r} is not one of {HARDNESS_LOGP}")
        if self.hae_tau <= 0:
            raise ValueError(f"hae_tau must be > 0, got {self.hae_tau}")
        super().__post_init__()

    @property
    def hae_gammas(self) -> tuple[float, float]:
        """(γ_st, γ_h) in effect for the variant."""
        on_st, on_h = VARIANTS[self.hae_variant]
        return on_st * self.hae_gamma_st, on_h * self.hae_gamma_h


@dataclass
class PreferenceLabelCollator:
    """Wraps a preference collator and adds each row's severity and error type as index tensors."""

    collator: Callable[[list[dict]], dict]

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        batch = self.collator([{k: v for k, v in e.items() if k not in LABEL_COLUMNS} for e in examples])
        batch[SEVERITY_KEY] = label_indices([e["severity"] for e in examples], SEVERITIES, "severity")
        batch[ERROR_TYPE_KEY] = label_indices([e["error_type"] for e in examples], ERROR_TYPES, "error_type")
        return batch


class HAEDPOTrainer(DPOTrainer):
    """TRL's DPOTrainer (sigmoid loss) with the HAE per-sample margin; see the module docstring."""

    def __init__(self, model, ref_model=None, args: HAEDPOConfig | None = None, *, train_dataset=None, **kwargs):
        if not isinstance(args, HAEDPOConfig):
            raise TypeError(f"HAEDPOTrainer needs an HAEDPOConfig, got {type(args).__name__}")
        if args.loss_type not in (["sigmoid"], ["sigmoid", "sft"]):
            raise ValueError(f"HAE-DPO needs loss_type ['sigmoid'] (the paper's loss) or ['sigmoid', 'sft'] (plus the "
                             f"chosen answer's NLL), got {args.loss_type!r}")
        unsupported = {
            "f_divergence_type": (args.f_divergence_type, "reverse_kl"),
            "ld_alpha": (args.ld_alpha, None), "use_weighting": (args.use_weighting, False),
            "precompute_ref_log_probs": (args.precompute_ref_log_probs, False),
        }
        for name, (value, required) in unsupported.items():
            if value != required:
                raise ValueError(f"HAE-DPO needs {name}={required!r} (the margin is defined on the sigmoid loss and "
                                 f"its hardness on the reference forward pass), got {value!r}")
        for name, dataset in (("training", train_dataset), ("evaluation", kwargs.get("eval_dataset"))):
            columns = getattr(dataset, "column_names", None)
            missing = [c for c in LABEL_COLUMNS if columns is not None and c not in columns]
            if missing:
                raise ValueError(f"the {name} set lacks the HAE label column(s) {missing} (columns: {columns})")
        super().__init__(model, ref_model=ref_model, args=args, train_dataset=train_dataset, **kwargs)
        self.data_collator = PreferenceLabelCollator(self.data_collator)
        self._unwrapped_modules: dict[torch.nn.Module, torch.nn.Module] = {}

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()  # TRL keeps prompt/chosen/rejected/images: add the labels
        self._signature_columns = list(self._signature_columns) + [
            c for c in LABEL_COLUMNS if c not in self._signature_columns]

    def _unwrapped(self, model) -> torch.nn.Module:
        """The module inside a DDP/DeepSpeed wrapper, remembered per wrapper (accelerate's lookup costs ~0.4 ms)."""
        if model not in self._unwrapped_modules:
            self._unwrapped_modules[model] = self.accelerator.unwrap_model(model)
        return self._unwrapped_modules[model]

    def _compute_loss(self, model, inputs, return_outputs):
        inputs = dict(inputs)
        severity, error_type = inputs.pop(SEVERITY_KEY), inputs.pop(ERROR_TYPE_KEY)
        policy = self._unwrapped(model)
        reference = self._unwrapped(self.ref_model) if self.ref_model is not None else policy
        calls: list[tuple[torch.nn.Module, Any]] = []
        hooks = [module.register_forward_hook(lambda m, args, out: calls.append((m, out)))
                 for module in {id(policy): policy, id(reference): reference}.values()]
        try:
            result = super()._compute_loss(model, inputs, return_outputs)
        finally:
            for hook in hooks:
                hook.remove()
        # TRL 1.16 runs the policy, then the reference (with PEFT and no ref_model: the policy, adapters disabled)
        if len(calls) < 2 or calls[0][0] is not policy or calls[1][0] is not reference:
            raise RuntimeError("DPOTrainer._compute_loss no longer calls the policy then the reference model; "
                               "HAEDPOTrainer must be updated for this TRL version")
        policy_out, ref_out = calls[0][1], calls[1][1]
        shift_mask = inputs["completion_mask"][..., 1:]
        seq_len = shift_mask.size(1)
        logps = policy_out.log_probs[:, -seq_len:].sum(dim=1)  # TRL: masked positions hold 0
        ref_per_token = ref_out.log_probs[:, -seq_len:]
        ref_logps = ref_per_token.sum(dim=1)
        chosen_logps, rejected_logps = logps.chunk(2, dim=0)
        ref_chosen_logps, ref_rejected_logps = ref_logps.chunk(2, dim=0)
        delta = (chosen_logps - ref_chosen_logps) - (rejected_logps - ref_rejected_logps)

        hardness_chosen, hardness_rejected = completion_logps(
            ref_per_token, shift_mask, self.args.hae_hardness_logp).chunk(2, dim=0)
        gamma_st, gamma_h = self.args.hae_gammas
        margin, st_term, h_term = hae_margin(severity, error_type, hardness_rejected, hardness_chosen,
                                             gamma_st=gamma_st, gamma_h=gamma_h, tau=self.args.hae_tau)
        loss = -F.logsigmoid(self.beta * delta - margin).mean()
        for loss_type, weight in zip(self.loss_types, self.loss_weights):
            if loss_type == "sft":  # TRL's "sft" term: mean NLL per chosen-answer token
                chosen_per_token = policy_out.log_probs[:, -seq_len:].chunk(2, dim=0)[0]
                loss = loss - weight * chosen_per_token[shift_mask.chunk(2, dim=0)[0].bool()].mean()
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * policy_out.aux_loss
        self._log_margin(margin, st_term, h_term, severity, error_type)
        return (loss, result[1]) if return_outputs else loss

    def _log_margin(self, margin, st_term, h_term, severity, error_type) -> None:
        """Append this step's margin statistics (all processes) to the metrics TRL averages per logging window."""
        mode = "train" if self.model.training else "eval"
        rows = torch.stack([margin, st_term, h_term, severity.to(margin), error_type.to(margin)], dim=1)
        margin, st_term, h_term, severity, error_type = self.accelerator.gather(rows.detach()).unbind(1)
        names = [f"hae/margin/{name}" for name in ERROR_TYPES + SEVERITIES]
        groups = torch.stack([error_type == i for i in range(len(ERROR_TYPES))]
                             + [severity == i for i in range(len(SEVERITIES))]).to(margin)
        counts = groups.sum(dim=1)
        means = torch.cat([torch.stack([margin.mean(), st_term.mean(), h_term.mean()]),
                           (groups * margin).sum(dim=1) / counts.clamp(min=1), counts]).tolist()  # one device sync
        metrics = self._metrics[mode]
        for name, value in zip(("hae/margin_mean", "hae/st_term_mean", "hae/hardness_mean"), means[:3]):
            metrics[name].append(value)
        for name, value, count in zip(names, means[3:3 + len(names)], means[3 + len(names):]):
            if count:  # a window's mean per group covers the steps that had the group
                metrics[name].append(value)


def preference_lengths(dataset, processor) -> list[int]:
    """Tokens of each row's longer sequence (prompt + chosen or prompt + rejected), as the vision collator builds it."""

    per_answer = [
        sample_lengths(dataset.select_columns(["images", "prompt", answer]).rename_column(answer, "completion"),
                       processor)
        for answer in ("chosen", "rejected")
    ]
    return [max(pair) for pair in zip(*per_answer)]


# --- entry point ---------------------------------------------------------------------------------

def check_choices(params: Mapping[str, Any]) -> None:
    """The keys with a closed set of values hold one of them (ConfigError naming the key otherwise)."""

    for key, allowed in (("dpo_variant", VARIANTS), ("hae_hardness_logp", HARDNESS_LOGP),
                         ("preference_bad_rows", BAD_ROWS)):
        if params[key] not in allowed:
            raise ConfigError(f"key '{key}' expects one of {sorted(allowed)}, found {params[key]!r}")


def resolve_output_dir(params: Mapping[str, Any]) -> Path:
    """output_dir, else outputs/<run_name>/04_hae_dpo/<variant>."""
    if params["output_dir"]:
        return Path(params["output_dir"])
    if not params["run_name"]:
        raise ValueError(f"set output_dir (or run_name, for outputs/<run_name>/{STAGE}/<variant>)")

    return paths.stage_dir(params["run_name"], STAGE) / params["dpo_variant"]


def dpo_config(params: Mapping[str, Any], output_dir: Path, accumulation: int) -> HAEDPOConfig:
    """HAEDPOConfig from the parameters; max_length=None because over-long samples are dropped beforehand."""
    return HAEDPOConfig(
        **trainer_arguments(params, output_dir, accumulation),
        beta=params["beta"],
        loss_type=["sigmoid", "sft"] if params["chosen_nll_weight"] else ["sigmoid"],
        loss_weights=[1.0, params["chosen_nll_weight"]] if params["chosen_nll_weight"] else None,
        hae_variant=params["dpo_variant"],
        hae_gamma_st=params["hae_gamma_st"],
        hae_gamma_h=params["hae_gamma_h"],
        hae_tau=params["hae_tau"],
        hae_hardness_logp=params["hae_hardness_logp"],
    )


def _init_zero3_process_group(args: HAEDPOConfig) -> None:
    """Start DeepSpeed's process group on gloo (several CPU processes) before any model loads inside zero.Init."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    backend = cpu_ddp_backend()
    if backend is None or args.deepspeed_plugin is None or not is_deepspeed_zero3_enabled():
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend)


def load_reference(params: Mapping[str, Any]):
    """The explicit reference model (dpo_ref_model), or None to let TRL load model_name_or_path again."""
    if not params["dpo_ref_model"] or params["dpo_ref_model"] == params["model_name_or_path"]:
        return None
    from transformers import AutoModelForImageTextToText

    kwargs = {"dtype": params["model_dtype"]}
    if params["attn_implementation"]:
        kwargs["attn_implementation"] = params["attn_implementation"]
    return AutoModelForImageTextToText.from_pretrained(paths.model_source(params["dpo_ref_model"]), **kwargs).eval()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def train_hae_dpo(params: Mapping[str, Any], *, callbacks: list | None = None) -> dict[str, Any]:
    """Run (or resume) one HAE-DPO variant; returns the metrics also written to output_dir/train_metrics.json."""

    for required in ("model_name_or_path", "preference_data_path"):
        if not params.get(required):
            raise ValueError(f"the profile or command line must set '{required}'")
    check_choices(params)
    n_processes = world_size()
    per_device = params["per_device_train_batch_size"]
    accumulation = gradient_accumulation(params["global_batch_size"], per_device, n_processes)
    output_dir = resolve_output_dir(params)
    args = dpo_config(params, output_dir, accumulation)  # before the models: sets up ZeRO-3 init under DeepSpeed
    _init_zero3_process_group(args)
    main = args.process_index == 0
    if main:
        print(describe_batch(per_device, n_processes, accumulation))
        print(f"HAE-DPO variant {args.hae_variant}: beta {args.beta}, gamma_st {args.hae_gammas[0]}, "
              f"gamma_h {args.hae_gammas[1]}, tau {args.hae_tau}, hardness l_ref = {args.hae_hardness_logp}")

    model, processor, peft_config = load_for_training(params)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    ref_model = load_reference(params)
    with args.main_process_first(desc="preference data"):
        dataset, skipped = load_preferences(params["preference_data_path"], bad_rows=params["preference_bad_rows"])
    if main and skipped:
        _write_jsonl(output_dir / SKIPPED_FILE, skipped)
        print(f"skipped {len(skipped)} invalid preference rows (listed in {output_dir / SKIPPED_FILE})")
    lengths = preference_lengths(dataset, processor)
    dataset, dropped = drop_long_samples(
        dataset, lengths, params["max_length"], output_dir / DROPPED_FILE if main else None)
    if main:
        mean = sum(lengths) / len(lengths)
        print(f"{len(dataset)} preference pairs; tokens per sequence: max {max(lengths)}, mean {mean:.0f}")

    trainer = HAEDPOTrainer(model=model, ref_model=ref_model, args=args, train_dataset=dataset,
                            processing_class=processor, peft_config=peft_config, callbacks=callbacks)
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is not None and main:
        print(f"resuming from {checkpoint}")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))
    trainer.save_state()
    gamma_st, gamma_h = args.hae_gammas
    metrics = {
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_steps_per_second": result.metrics.get("train_steps_per_second"),
        "global_step": trainer.state.global_step,
        "dpo_variant": args.hae_variant,
        "learning_rate": args.learning_rate,
        "beta": args.beta,
        "chosen_nll_weight": params["chosen_nll_weight"],
        "hae_gamma_st": gamma_st,  # in effect for the variant (0 where it is off)
        "hae_gamma_h": gamma_h,
        "hae_gamma_st_configured": params["hae_gamma_st"],
        "hae_gamma_h_configured": params["hae_gamma_h"],
        "freeze_vision_tower": params["freeze_vision_tower"],
        "freeze_merger": params["freeze_merger"],
        "frozen_parameters": frozen,
        "hae_tau": args.hae_tau,
        "hae_hardness_logp": args.hae_hardness_logp,
        "reference_model": params["dpo_ref_model"] or params["model_name_or_path"],
        "world_size": n_processes,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": per_device * n_processes * accumulation,
        "num_train_samples": len(dataset),
        "num_skipped_rows": len(skipped),
        "num_dropped_samples": len(dropped),
        "max_sample_tokens": max(lengths),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "use_lora": params["use_lora"],
        "final_dir": str(final_dir),
        "log_history": trainer.state.log_history,
    }
    if main:
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"saved {'adapter' if params['use_lora'] else 'model'} and processor to {final_dir}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_entry_point(argv, description=__doc__.split("\n\n")[0], spec=DPO_KEYS, prefix=PREFIX,
                           epilog="Any HAE-DPO key can be overridden: --dpo_variant st_only --max_steps 10",
                           train=train_hae_dpo, check=check_choices)


if __name__ == "__main__":
    sys.exit(main())
