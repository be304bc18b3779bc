"""Stage 2 HAE-DPO (paper §3.2, eqs. 2–3): TRL's sigmoid DPO loss with a per-sample margin m_i.

    L = −log σ(β·[log πθ(y_w)/πref(y_w) − log πθ(y_r)/πref(y_r)] − m_i)
    m_i = γ_st · s_i · c(t_i) + γ_h · σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ)

    python -m editcaption.train.hae_dpo --config params/recipes/demo/dpo.yaml [--field value ...]
    accelerate launch --config_file params/accelerate/zero3.yaml -m editcaption.train.hae_dpo --config ...

`HAEDPOTrainer` lets TRL's `DPOTrainer` run its two forward passes (policy, frozen reference) and log its
metrics, records the per-token log-probabilities of both passes with forward hooks, and returns the margin
loss built from them: no extra forward pass, and the logged rewards stay TRL's true DPO rewards. The margin
terms are logged beside them (`hae/...`). The fields are `configs.HAEDPOConfig` (TRL's DPOConfig plus the margin's)
and `configs.VisionModelConfig`. `hae_variant` picks a row of table 4: dpo (γ_st = γ_h = 0),
st_only (γ_h = 0), h_only (γ_st = 0), hae (both); or a control: const (every pair's margin is
`hae_constant_margin`) or nll_only (the loss is the chosen answers' NLL per token, no preference term). Whatever
the variant, the DPO part (`hae/dpo_loss`) and the chosen NLL (`hae/chosen_nll`) are logged apart.
"""
from __future__ import annotations

import copy
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from trl import DPOTrainer

from editcaption import paths
from editcaption.data.preference_rows import load_preferences
from editcaption.rubric import ERROR_TYPES, SEVERITIES
from editcaption.train.common import (
    check_output_dir,
    describe_batch,
    effective_config,
    last_checkpoint,
    load_for_training,
    model_kwargs,
    run_entry_point,
)
from editcaption.train.configs import HAEDPOConfig, VisionModelConfig, cpu_ddp_backend, world_size
from editcaption.train.margin import completion_logps, hae_margin, label_indices
from editcaption.train.sft import drop_long_samples, sample_lengths

STAGE = "04_hae_dpo"
LABEL_COLUMNS = ("severity", "error_type")  # dataset columns carried through TRL's preprocessing
SEVERITY_KEY, ERROR_TYPE_KEY = "hae_severity", "hae_error_type"  # their index tensors in a collated batch
SKIPPED_FILE = "skipped_preferences.jsonl"
DROPPED_FILE = "dropped_samples.jsonl"
METRICS_FILE = "train_metrics.json"


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
        if self.args.hae_variant == "const":  # the control: one margin for every pair
            margin = torch.full_like(margin, self.args.hae_constant_margin)
        dpo_loss = -F.logsigmoid(self.beta * delta - margin).mean()
        chosen_per_token = policy_out.log_probs[:, -seq_len:].chunk(2, dim=0)[0]
        chosen_nll = -chosen_per_token[shift_mask.chunk(2, dim=0)[0].bool()].mean()  # TRL's "sft" term, per token
        if self.args.hae_variant == "nll_only":  # the control: imitate the chosen answers, no preference term
            loss = chosen_nll
        else:
            loss = dpo_loss + sum(weight * chosen_nll for loss_type, weight in zip(self.loss_types, self.loss_weights)
                                  if loss_type == "sft")
        if self.aux_loss_enabled:
            loss = loss + self.router_aux_loss_coef * policy_out.aux_loss
        self._log_margin(margin, st_term, h_term, severity, error_type)
        self._log_parts(dpo_loss, chosen_nll)
        return (loss, result[1]) if return_outputs else loss

    def _log_parts(self, dpo_loss: torch.Tensor, chosen_nll: torch.Tensor) -> None:
        """Log the two parts of the loss apart, whatever the run trains on: `hae/dpo_loss` (eq. 2 with the run's
        margin) and `hae/chosen_nll` (the chosen answer's NLL per token), so every variant's curves compare."""
        mode = "train" if self.model.training else "eval"
        parts = self.accelerator.gather(torch.stack([dpo_loss, chosen_nll]).detach()[None]).mean(dim=0).tolist()
        self._metrics[mode]["hae/dpo_loss"].append(parts[0])
        self._metrics[mode]["hae/chosen_nll"].append(parts[1])

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

def _init_zero3_process_group(args: HAEDPOConfig) -> None:
    """Start DeepSpeed's process group on gloo (several CPU processes) before any model loads inside zero.Init."""
    from transformers.integrations import is_deepspeed_zero3_enabled

    backend = cpu_ddp_backend()
    if backend is None or args.deepspeed_plugin is None or not is_deepspeed_zero3_enabled():
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend=backend)


def load_reference(args: HAEDPOConfig, model_args: VisionModelConfig):
    """The explicit reference model (ref_model_name_or_path), or None to let TRL load model_name_or_path again."""
    if not args.ref_model_name_or_path or args.ref_model_name_or_path == model_args.model_name_or_path:
        return None
    from transformers import AutoModelForImageTextToText

    return AutoModelForImageTextToText.from_pretrained(paths.model_source(args.ref_model_name_or_path),
                                                       **model_kwargs(model_args)).eval()


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")


def train_hae_dpo(args: HAEDPOConfig, model_args: VisionModelConfig, *, callbacks: list | None = None) -> dict[str, Any]:
    """Run (or resume) one HAE-DPO variant; returns the metrics also written to output_dir/train_metrics.json."""

    if not args.dataset_path:
        raise ValueError("dataset_path is not set (the preference set's `datasets` folder)")
    output_dir = check_output_dir(args)
    _init_zero3_process_group(args)
    n_processes = world_size()
    per_device, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    main = args.process_index == 0
    gamma_st, gamma_h = args.hae_gammas
    if main:
        print(describe_batch(per_device, n_processes, accumulation))
        print(f"HAE-DPO variant {args.hae_variant}: beta {args.beta}, gamma_st {gamma_st}, "
              f"gamma_h {gamma_h}, tau {args.hae_tau}, hardness l_ref = {args.hae_hardness_logp}")

    model, processor, peft_config = load_for_training(model_args)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    ref_model = load_reference(args, model_args)
    with args.main_process_first(desc="preference data"):
        dataset, skipped = load_preferences(args.dataset_path, bad_rows=args.bad_rows)
    if main and skipped:
        _write_jsonl(output_dir / SKIPPED_FILE, skipped)
        print(f"skipped {len(skipped)} invalid preference rows (listed in {output_dir / SKIPPED_FILE})")
    lengths = preference_lengths(dataset, processor)
    dataset, dropped = drop_long_samples(dataset, lengths, args.max_length, output_dir / DROPPED_FILE if main else None)
    config = effective_config(args, model_args)
    args = copy.copy(args)  # the caller's config stays as given
    args.max_length = None  # longer samples are gone: TRL must not truncate (it would cut image tokens)
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
    metrics = {
        "train_loss": result.training_loss,
        "train_runtime": result.metrics.get("train_runtime"),
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_steps_per_second": result.metrics.get("train_steps_per_second"),
        "global_step": trainer.state.global_step,
        "hae_variant": args.hae_variant,
        "gamma": {"configured": {"st": args.hae_gamma_st, "h": args.hae_gamma_h},  # the recipe's values
                  "effective": {"st": gamma_st, "h": gamma_h}},  # in effect for the variant (0 where it is off)
        "constant_margin": args.hae_constant_margin,  # the const control's margin (0 for every other variant)
        "preference_term": args.hae_variant != "nll_only",  # nll_only trains the chosen answers' NLL alone
        "frozen_parameters": frozen,
        "reference_model": args.ref_model_name_or_path or model_args.model_name_or_path,
        "world_size": n_processes,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": per_device * n_processes * accumulation,
        "num_train_samples": len(dataset),
        "num_skipped_rows": len(skipped),
        "num_dropped_samples": len(dropped),
        "max_sample_tokens": max(lengths),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "use_peft": model_args.use_peft,
        "final_dir": str(final_dir),
        "config": config,
        "log_history": trainer.state.log_history,
    }
    if main:
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"saved {'adapter' if model_args.use_peft else 'model'} and processor to {final_dir}")
    return metrics


def main(argv: list[str] | None = None) -> int:
    return run_entry_point("dpo", argv, train_hae_dpo)


if __name__ == "__main__":
    sys.exit(main())
