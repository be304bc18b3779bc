"""The HAE-DPO per-sample margin (paper §3.2, eq. 3), a pure function of labels and reference log-likelihoods.

    m_i = γ_st · s_i · c(t_i) + γ_h · σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ)

s_i is the severity weight of the rejected answer (P0 1.0, P1 0.5, P2 0.0), c(t_i) the weight of its failure
mode (orientation 0.2, viewpoint 0.15, detail 0.1), ℓ_ref the reference model's log-likelihood of an answer.
Labels are given as strings or as integer indices into `rubric.SEVERITIES` / `rubric.ERROR_TYPES`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import datasets
import pandas as pd
import torch
from trl.data_utils import apply_chat_template, prepare_multimodal_messages

from editcaption.data.preference_rows import load_preferences
from editcaption.models.loading import load_model_and_processor

from editcaption.rubric import ERROR_TYPES, SEVERITIES, SEVERITY_WEIGHT, TYPE_WEIGHT

Labels = Sequence[str] | torch.Tensor


def label_indices(values: Sequence[str], vocabulary: Sequence[str], name: str) -> torch.Tensor:
    """Strings → int64 indices into `vocabulary`; an unknown value raises ValueError naming its row and value."""
    position = {label: index for index, label in enumerate(vocabulary)}
    indices = []
    for row, value in enumerate(values):
        if value not in position:
            raise ValueError(f"row {row}: unknown {name} {value!r}; expected one of {tuple(vocabulary)}")
        indices.append(position[value])
    return torch.tensor(indices, dtype=torch.long)


def _weights(labels: Labels, vocabulary: Sequence[str], weights: Mapping[str, float], name: str,
             like: torch.Tensor) -> torch.Tensor:
    """Per-row weight of each label, as a tensor on `like`'s device and dtype."""
    if not isinstance(labels, torch.Tensor):
        labels = label_indices(labels, vocabulary, name)
    bad = ((labels < 0) | (labels >= len(vocabulary))).nonzero()
    if len(bad):
        row = int(bad[0, 0])
        raise ValueError(f"row {row}: unknown {name} index {int(labels[row])}; expected 0..{len(vocabulary) - 1} "
                         f"for {tuple(vocabulary)}")
    missing = [label for label in vocabulary if label not in weights]
    if missing:
        raise ValueError(f"{name} weights lack {missing}")
    table = torch.tensor([float(weights[label]) for label in vocabulary], dtype=like.dtype, device=like.device)
    return table[labels.to(like.device)]


def completion_logps(per_token_logps: torch.Tensor, completion_mask: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """ℓ(y) per row from per-token log-probs: their sum over completion tokens, or the mean per completion token."""
    if how not in ("mean", "sum"):
        raise ValueError(f"how must be 'mean' or 'sum', got {how!r}")
    mask = completion_mask.to(per_token_logps.dtype)
    total = (per_token_logps * mask).sum(dim=1)
    return total / mask.sum(dim=1).clamp(min=1) if how == "mean" else total


def hae_margin(
    severity: Labels,
    error_type: Labels,
    ref_logp_rejected: torch.Tensor,
    ref_logp_chosen: torch.Tensor,
    *,
    gamma_st: float,
    gamma_h: float,
    tau: float,
    type_weights: Mapping[str, float] = TYPE_WEIGHT,
    severity_weights: Mapping[str, float] = SEVERITY_WEIGHT,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(m, st_term, h_term) per row: m = gamma_st · st_term + gamma_h · h_term, detached (constant w.r.t. θ).
    γ_st, γ_h and τ have no default here: theirs is `configs.HAEDPOConfig`'s.

    st_term = s_i · c(t_i) and h_term = σ((ℓ_ref(y_r) − ℓ_ref(y_w)) / τ) are the unweighted components, so the
    hardness of a pair can be logged even when gamma_h = 0. The ℓ_ref inputs are per-row log-likelihoods
    (length-normalised or summed: the caller's choice).
    """
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    ref_logp_rejected, ref_logp_chosen = ref_logp_rejected.detach(), ref_logp_chosen.detach()
    if ref_logp_rejected.shape != ref_logp_chosen.shape or ref_logp_chosen.dim() != 1:
        raise ValueError(f"reference log-likelihoods must be two 1-D tensors of one shape, got "
                         f"{tuple(ref_logp_rejected.shape)} and {tuple(ref_logp_chosen.shape)}")
    rows = ref_logp_chosen.shape[0]
    for name, labels in (("severity", severity), ("error_type", error_type)):
        if len(labels) != rows:
            raise ValueError(f"{len(labels)} {name} labels for {rows} rows")
    s = _weights(severity, SEVERITIES, severity_weights, "severity", ref_logp_chosen)
    c = _weights(error_type, ERROR_TYPES, type_weights, "error_type", ref_logp_chosen)
    st_term = s * c
    h_term = torch.sigmoid((ref_logp_rejected - ref_logp_chosen) / tau)
    return gamma_st * st_term + gamma_h * h_term, st_term, h_term


def reference_margins(model_path: str | Path, preference_path: str | Path, *, gamma_st: float, gamma_h: float,
                      tau: float, hardness_logp: str, limit: int = 0):
    """Eq. 3 over the preference set: the reference model's ℓ_ref of chosen and rejected (per completion token
    for hardness_logp="mean", summed for "sum", from the same chat text TRL builds) and `hae_margin`'s terms,
    one row per preference pair (the first `limit` rows; 0 = all)."""
    model, processor = load_model_and_processor(model_path)
    raw = datasets.load_from_disk(str(preference_path))
    trl_rows, _ = load_preferences(preference_path)
    n = min(limit or len(trl_rows), len(trl_rows))
    logps = {"chosen": [], "rejected": []}
    with torch.no_grad():
        for row in trl_rows.select(range(n)):
            images = row["images"]
            for answer in ("chosen", "rejected"):
                texts = apply_chat_template({"prompt": prepare_multimodal_messages(row["prompt"], images=images),
                                             "completion": prepare_multimodal_messages(row[answer])}, processor)
                prompt = processor(text=[texts["prompt"]], images=[images], return_tensors="pt")
                prompt_len = prompt["input_ids"].shape[1]
                inputs = processor(text=[texts["prompt"] + texts["completion"]], images=[images], return_tensors="pt")
                ids = inputs["input_ids"]
                per_token = torch.log_softmax(model(**inputs).logits[:, :-1].float(), dim=-1).gather(
                    -1, ids[:, 1:, None])[..., 0][:, prompt_len - 1:]
                logps[answer].append(per_token.mean() if hardness_logp == "mean" else per_token.sum())
    meta = raw.select_columns(["id", "error_type", "severity"]).select(range(n))
    chosen, rejected = torch.stack(logps["chosen"]), torch.stack(logps["rejected"])
    margin, st_term, h_term = hae_margin(meta["severity"], meta["error_type"], rejected, chosen,
                                         gamma_st=gamma_st, gamma_h=gamma_h, tau=tau)
    return pd.DataFrame({"id": meta["id"], "error_type": meta["error_type"], "severity": meta["severity"],
                         "ref_logp_chosen": chosen.tolist(), "ref_logp_rejected": rejected.tolist(),
                         "st_term": st_term.tolist(), "h_term": h_term.tolist(), "margin": margin.tolist()})
