"""HAE-DPO on the tiny Qwen3-VL: equality with TRL's DPO at γ = 0, the margin loss by hand, label columns,
one reference forward per micro-batch, the four variants, resume, bad rows, DeepSpeed ZeRO-3."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import datasets
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image, ImageDraw
from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback
from trl import DPOConfig, DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForVisionPreference

from launch_helper import launch_zero3_cpu

from editcaption.config import ConfigError
from editcaption.models import build_tiny_model, load_model_and_processor
from editcaption.prompts import INSTRUCTION_PROMPT
from editcaption.records import ERROR_TYPES, PREFERENCE_FEATURES, SEVERITIES, RecordError
from editcaption.train.common import last_checkpoint
from editcaption.train.recipe import build_stage_args, parse_stage_args, read_recipe, resolved
from editcaption.data.preference_rows import load_preferences
from editcaption.train.hae_dpo import (
    ERROR_TYPE_KEY,
    METRICS_FILE,
    SEVERITY_KEY,
    SKIPPED_FILE,
    HAEDPOConfig,
    HAEDPOTrainer,
    PreferenceLabelCollator,
    preference_lengths,
    train_hae_dpo,
)

REPO = Path(__file__).resolve().parents[1]
N_ROWS = 8
ROW = re.compile(r"Row (\d+):")


def _image(index: int, size: int, shifted: bool) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 235, 235))
    x = size // 2 if shifted else size // 8
    ImageDraw.Draw(image).rectangle([x, size // 4, x + size // 4, size // 2], fill=(40 + 25 * index, 80, 200))
    return image


def preference_rows(n: int = N_ROWS, big: dict[int, int] | None = None) -> list[dict]:
    """Rows i: error type i mod 3, severity P0 (i < 3), P1 (i < 6), P2; chosen/rejected name the row."""
    rows = []
    for i in range(n):
        side = (big or {}).get(i, 64)
        rows.append({
            "id": f"pref-{i:03d}", "images": [_image(i, side, False), _image(i, side, True)],
            "prompt": INSTRUCTION_PROMPT,
            "chosen": f"Row {i}: move the blue square to the right.",
            "rejected": f"Row {i}: move the blue square to the left and make it red.",
            "error_type": ERROR_TYPES[i % 3], "severity": SEVERITIES[min(i // 3, 2)],
        })
    return rows


def save_rows(rows: list[dict], folder: Path, features=PREFERENCE_FEATURES) -> Path:
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(folder))
    return folder


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory) -> Path:
    return build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0)


@pytest.fixture(scope="module")
def prefs_dir(tmp_path_factory) -> Path:
    return save_rows(preference_rows(), tmp_path_factory.mktemp("data") / "prefs")


@pytest.fixture(scope="module")
def trl_rows(prefs_dir):
    return load_preferences(prefs_dir)[0]


def params_for(smoke_dir, data_dir, out_dir, **fields):
    """(HAEDPOConfig, VisionModelConfig) of a short run, as the entry point builds them from a recipe."""
    base = {
        "model_name_or_path": str(smoke_dir), "dataset_path": str(data_dir), "output_dir": str(out_dir),
        "learning_rate": 1e-3, "max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1,
        "save_steps": 100, "warmup_steps": 0.0, "bf16": False, "activation_checkpointing": False,
    }
    return build_stage_args("dpo", {**base, **fields})


def make_trainer(smoke_dir, rows, out_dir, trainer_class=HAEDPOTrainer, **config):
    """A trainer on a fresh copy of the smoke model; the reference is TRL's reload of the same checkpoint."""
    config_class = HAEDPOConfig if trainer_class is HAEDPOTrainer else DPOConfig
    args = config_class(output_dir=str(out_dir), report_to="none", bf16=False, activation_checkpointing=False,
                        max_length=None, logging_steps=1, seed=0, **{"per_device_train_batch_size": 4, **config})
    model = AutoModelForImageTextToText.from_pretrained(smoke_dir, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(smoke_dir)
    return trainer_class(model=model, args=args, train_dataset=rows, processing_class=processor)


def perturb(model, seed: int = 1) -> None:
    """Move the policy away from the reference so that the log-ratios are not all zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.02 * torch.randn(param.shape, generator=generator))


def collate(trainer, rows, indices):
    return trainer._prepare_inputs(trainer.data_collator([rows[i] for i in indices]))


# --- parameters ----------------------------------------------------------------------------------

def test_one_default_per_field_and_the_paper_recipe_holds_appendix_c(tmp_path, capsys):
    from editcaption.train.hae_dpo import main

    defaults = resolved({}, "dpo")  # HAEDPOConfig's defaults: the margin's appendix C values, TRL's beta
    assert (defaults["beta"], defaults["hae_tau"], defaults["hae_gamma_st"], defaults["hae_gamma_h"]) == (0.1, 1, 1, 1)
    assert (defaults["hae_variant"], defaults["hae_hardness_logp"], defaults["ref_model_name_or_path"]) == (
        "hae", "mean", None)
    paper = resolved(read_recipe(REPO / "params" / "recipes" / "paper" / "dpo.yaml", "dpo"), "dpo")
    assert (paper["learning_rate"], paper["num_train_epochs"], paper["global_batch_size"]) == (5e-6, 4.0, 128)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"learning_rate": 1.0e-5, "global_batch_size": 8, "hae_variant": "st_only",
                                      "bf16": False, "output_dir": str(tmp_path / "o")}))
    args, _ = parse_stage_args("dpo", ["--config", str(recipe), "--hae_tau", "2", "--num_train_epochs", "3"])
    assert (args.learning_rate, args.gradient_accumulation_steps, args.hae_variant) == (1e-5, 1, "st_only")
    assert (args.hae_tau, args.num_train_epochs, args.hae_gammas) == (2.0, 3.0, (1.0, 0.0))
    with pytest.raises(SystemExit):
        main(["--config", str(recipe), "--hae_variant", "both"])
    err = capsys.readouterr().err
    assert "argument --hae_variant" in err and "invalid choice: 'both'" in err


def test_config_variants_and_refusals():
    def config(config_class=HAEDPOConfig, **kwargs):
        return config_class(output_dir="x", bf16=False, report_to="none", **kwargs)

    gammas = {v: config(hae_variant=v, hae_gamma_st=2.0, hae_gamma_h=3.0).hae_gammas
              for v in ("dpo", "st_only", "h_only", "hae")}
    assert gammas == {"dpo": (0.0, 0.0), "st_only": (2.0, 0.0), "h_only": (0.0, 3.0), "hae": (2.0, 3.0)}
    with pytest.raises(ValueError, match="hae_variant 'ipo' is not one of"):
        config(hae_variant="ipo")
    with pytest.raises(ValueError, match="hae_tau must be > 0"):
        config(hae_tau=0.0)
    controls = {v: config(hae_variant=v, hae_constant_margin=0.5 if v == "const" else 0.0).hae_gammas
                for v in ("const", "nll_only")}
    assert controls == {"const": (0.0, 0.0), "nll_only": (0.0, 0.0)}
    with pytest.raises(ValueError, match="hae_variant const needs hae_constant_margin > 0"):
        config(hae_variant="const")
    with pytest.raises(ValueError, match="only used by hae_variant const"):
        config(hae_variant="hae", hae_constant_margin=0.5)
    with pytest.raises(TypeError, match="needs an HAEDPOConfig, got DPOConfig"):
        HAEDPOTrainer(model=None, args=config(DPOConfig))
    with pytest.raises(ValueError, match=r"HAE-DPO needs loss_type \['sigmoid'\]"):
        HAEDPOTrainer(model=None, args=config(loss_type="ipo"))
    no_labels = datasets.Dataset.from_dict({"prompt": ["a"], "chosen": ["b"], "rejected": ["c"]})
    with pytest.raises(ValueError, match=r"training set lacks the HAE label column\(s\) \['severity', 'error_type'\]"):
        HAEDPOTrainer(model=None, args=config(), train_dataset=no_labels)


# --- the loss ------------------------------------------------------------------------------------

@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_without_margin_loss_and_gradients_equal_trls_dpo(smoke_dir, trl_rows, tmp_path, moe):
    if moe:  # the MoE router's load-balancing loss joins both losses (router_aux_loss_coef 0.001)
        smoke_dir = build_tiny_model("smoke", tmp_path / "moe", moe=True)
    hae = make_trainer(smoke_dir, trl_rows, tmp_path / "hae", hae_variant="hae", hae_gamma_st=0.0, hae_gamma_h=0.0)
    trl = make_trainer(smoke_dir, trl_rows, tmp_path / "trl", trainer_class=DPOTrainer)
    assert hae.aux_loss_enabled == trl.aux_loss_enabled == moe
    losses, grads = [], []
    for trainer in (hae, trl):
        perturb(trainer.model)
        trainer.model.train()
        loss = trainer.compute_loss(trainer.model, collate(trainer, trl_rows, [0, 4, 5, 2]))
        loss.backward()
        losses.append(loss.item())
        grads.append({n: p.grad for n, p in trainer.model.named_parameters() if p.grad is not None})
    assert abs(losses[0] - losses[1]) <= 1e-6 and losses[0] != pytest.approx(math.log(2))  # Δ ≠ 0
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 10
    assert max((grads[0][n] - grads[1][n]).abs().max().item() for n in grads[0]) <= 1e-6
    assert any(g.abs().max() > 1e-4 for g in grads[0].values())
    for key in ("rewards/chosen", "rewards/rejected", "rewards/margins", "logps/chosen") + ("aux_loss",) * moe:
        assert hae._metrics["train"][key] == trl._metrics["train"][key]
    assert hae._metrics["train"]["hae/margin_mean"] == [0.0]


def _sequence_logps(model, batch):
    """Σ log p(token) over each row's completion, from the ordinary logits (not TRL's fused head)."""
    kwargs = {k: v for k, v in batch.items() if k not in ("completion_mask", SEVERITY_KEY, ERROR_TYPE_KEY)}
    with torch.no_grad():
        logits = model(**kwargs).logits[:, :-1].double()
    tokens = batch["input_ids"][:, 1:]
    per_token = F.log_softmax(logits, dim=-1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    mask = batch["completion_mask"][:, 1:].double()
    return (per_token * mask).sum(dim=1), mask.sum(dim=1)


def test_margin_loss_equals_hand_computation_and_rewards_stay_unshifted(smoke_dir, trl_rows, tmp_path):
    beta, tau, gamma_st, gamma_h = 0.5, 0.5, 2.0, 1.5
    trainer = make_trainer(smoke_dir, trl_rows, tmp_path / "hae", beta=beta, hae_tau=tau, hae_gamma_st=gamma_st,
                           hae_gamma_h=gamma_h)
    perturb(trainer.model)
    trainer.model.train()
    indices = [0, 1, 2, 3]  # orientation/P0, viewpoint/P0, detail/P0, orientation/P1
    batch = collate(trainer, trl_rows, indices)
    policy, lengths = _sequence_logps(trainer.model, batch)
    reference, _ = _sequence_logps(trainer.ref_model, batch)
    (pw, pl), (rw, rl), (nw, nl) = policy.chunk(2), reference.chunk(2), lengths.chunk(2)
    delta = (pw - rw) - (pl - rl)
    st = torch.tensor([0.2, 0.15, 0.1, 0.2 * 0.5], dtype=torch.float64)
    for hardness, (lw, ll) in (("mean", (rw / nw, rl / nl)), ("sum", (rw, rl))):
        trainer.args.hae_hardness_logp = hardness
        h = 1 / (1 + torch.exp(-(ll - lw) / tau))
        margin = gamma_st * st + gamma_h * h
        expected = torch.log1p(torch.exp(-(beta * delta - margin))).mean().item()
        loss = trainer.compute_loss(trainer.model, batch)
        assert loss.item() == pytest.approx(expected, rel=1e-5)
        logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
        assert logged["rewards/chosen"] == pytest.approx((beta * (pw - rw)).mean().item(), rel=1e-4, abs=1e-6)
        assert logged["rewards/margins"] == pytest.approx((beta * delta).mean().item(), rel=1e-4, abs=1e-6)
        assert logged["hae/margin_mean"] == pytest.approx(margin.mean().item(), rel=1e-5)
        assert logged["hae/st_term_mean"] == pytest.approx(st.mean().item(), rel=1e-6)
        assert logged["hae/hardness_mean"] == pytest.approx(h.mean().item(), rel=1e-5)
        assert logged["hae/margin/orientation"] == pytest.approx(margin[[0, 3]].mean().item(), rel=1e-5)
        assert logged["hae/margin/P1"] == pytest.approx(margin[3].item(), rel=1e-5)
        assert "hae/margin/P2" not in trainer._metrics["train"]  # no P2 row in this batch
    assert abs(delta).min() > 1e-3 and margin.min() > 0.1  # non-trivial: shifted rewards would differ


def test_the_chosen_nll_term_adds_trls_sft_loss_to_the_margin_loss(smoke_dir, trl_rows, tmp_path):
    beta, weight = 0.5, 0.7
    trainer = make_trainer(smoke_dir, trl_rows, tmp_path / "nll", beta=beta, hae_variant="dpo",
                           loss_type=["sigmoid", "sft"], loss_weights=[1.0, weight])
    perturb(trainer.model)
    trainer.model.train()
    batch = collate(trainer, trl_rows, [0, 1, 2, 3])
    policy, lengths = _sequence_logps(trainer.model, batch)
    reference, _ = _sequence_logps(trainer.ref_model, batch)
    (pw, pl), (rw, rl), (nw, _) = policy.chunk(2), reference.chunk(2), lengths.chunk(2)
    dpo = torch.log1p(torch.exp(-beta * ((pw - rw) - (pl - rl)))).mean()
    nll = -pw.sum() / nw.sum()  # TRL's "sft" term: mean NLL per chosen token of the batch
    assert trainer.compute_loss(trainer.model, batch).item() == pytest.approx((dpo + weight * nll).item(), rel=1e-5)
    assert nll.item() > 0.1  # the term is not negligible here


def test_the_controls_losses_const_margin_and_nll_only(smoke_dir, trl_rows, tmp_path):
    """const: eq. 2 with one margin for every pair; nll_only: the chosen answers' NLL per token alone. Both log
    the DPO part and the chosen NLL apart (hae/dpo_loss, hae/chosen_nll), as every variant does."""
    beta, constant = 0.5, 0.37
    batch_rows = [0, 1, 2, 3]
    const = make_trainer(smoke_dir, trl_rows, tmp_path / "const", beta=beta, hae_variant="const",
                         hae_constant_margin=constant)
    perturb(const.model)
    const.model.train()
    batch = collate(const, trl_rows, batch_rows)
    policy, lengths = _sequence_logps(const.model, batch)
    reference, _ = _sequence_logps(const.ref_model, batch)
    (pw, pl), (rw, rl), (nw, _) = policy.chunk(2), reference.chunk(2), lengths.chunk(2)
    delta = (pw - rw) - (pl - rl)
    dpo = torch.log1p(torch.exp(-(beta * delta - constant))).mean()
    nll = -pw.sum() / nw.sum()
    assert const.compute_loss(const.model, batch).item() == pytest.approx(dpo.item(), rel=1e-5)
    logged = {k: v[-1] for k, v in const._metrics["train"].items()}
    assert logged["hae/margin_mean"] == pytest.approx(constant) and logged["hae/margin/P0"] == pytest.approx(constant)
    assert logged["hae/dpo_loss"] == pytest.approx(dpo.item(), rel=1e-5)
    assert logged["hae/chosen_nll"] == pytest.approx(nll.item(), rel=1e-5)

    imitation = make_trainer(smoke_dir, trl_rows, tmp_path / "nll_only", beta=beta, hae_variant="nll_only")
    imitation.model.load_state_dict(const.model.state_dict())
    imitation.model.train()
    assert imitation.compute_loss(imitation.model, batch).item() == pytest.approx(nll.item(), rel=1e-5)
    logged = {k: v[-1] for k, v in imitation._metrics["train"].items()}
    assert logged["hae/dpo_loss"] == pytest.approx(torch.log1p(torch.exp(-beta * delta)).mean().item(), rel=1e-5)
    assert abs(dpo.item() - nll.item()) > 1e-2  # the two losses differ here: the test tells them apart


def test_label_columns_survive_preprocessing_and_shuffling(smoke_dir, trl_rows, tmp_path):
    trainer = make_trainer(smoke_dir, trl_rows, tmp_path / "hae", per_device_train_batch_size=3)
    tokenizer = trainer.processing_class.tokenizer
    order = []
    for batch in trainer.get_train_dataloader():
        n = len(batch[SEVERITY_KEY])
        for row in range(n):  # the first n sequences hold the chosen answers
            completion = batch["input_ids"][row][batch["completion_mask"][row].bool()]
            index = int(ROW.search(tokenizer.decode(completion)).group(1))
            order.append(index)
            assert SEVERITIES[batch[SEVERITY_KEY][row]] == trl_rows[index]["severity"]
            assert ERROR_TYPES[batch[ERROR_TYPE_KEY][row]] == trl_rows[index]["error_type"]
    assert sorted(order) == list(range(N_ROWS)) and order != sorted(order)  # shuffled, each row once
    with pytest.raises(ValueError, match="row 1: unknown severity 'P9'"):
        PreferenceLabelCollator(lambda rows: {})([{"severity": "P0", "error_type": "detail"},
                                                  {"severity": "P9", "error_type": "detail"}])


def test_one_reference_forward_per_micro_batch(smoke_dir, trl_rows, tmp_path):
    trainer = make_trainer(smoke_dir, trl_rows, tmp_path / "hae", per_device_train_batch_size=2,
                           gradient_accumulation_steps=2, max_steps=3, save_strategy="no")
    calls = {"policy": 0, "reference": 0}
    trainer.model.register_forward_pre_hook(lambda *_: calls.__setitem__("policy", calls["policy"] + 1))
    trainer.ref_model.register_forward_pre_hook(lambda *_: calls.__setitem__("reference", calls["reference"] + 1))
    trainer.train()
    assert calls == {"policy": 6, "reference": 6}  # 3 steps x 2 micro-batches, as TRL's DPOTrainer
    assert len(trainer.state.log_history[0]) > 0 and "hae/hardness_mean" in trainer.state.log_history[0]


# --- the entry point -----------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["dpo", "st_only", "h_only", "hae"])
def test_variant_trains_and_writes_metrics(smoke_dir, prefs_dir, tmp_path, variant):
    out = tmp_path / variant
    metrics = train_hae_dpo(*params_for(smoke_dir, prefs_dir, out, hae_variant=variant, hae_gamma_h=2.0))
    saved = json.loads((out / METRICS_FILE).read_text())
    on_st, on_h = {"dpo": (0, 0), "st_only": (1, 0), "h_only": (0, 2), "hae": (1, 2)}[variant]
    assert saved["hae_variant"] == saved["config"]["hae_variant"] == variant
    assert saved["gamma"] == {"configured": {"st": 1.0, "h": 2.0}, "effective": {"st": on_st, "h": on_h}}
    assert saved["global_step"] == metrics["global_step"] == 2 and math.isfinite(saved["train_loss"])
    logs = [e for e in saved["log_history"] if "loss" in e]
    assert len(logs) == 2
    for entry in logs:
        expected = on_st * entry["hae/st_term_mean"] + on_h * entry["hae/hardness_mean"]
        assert entry["hae/margin_mean"] == pytest.approx(expected, abs=1e-6)
        assert 0 < entry["hae/hardness_mean"] < 1
    keys = set().union(*logs)
    assert {f"hae/margin/{name}" for name in ERROR_TYPES + SEVERITIES} <= keys  # two batches of 4 cover all 8 rows
    assert (out / "final" / "model.safetensors").is_file()


@pytest.mark.parametrize("variant, constant", [("const", 0.42), ("nll_only", 0.0)])
def test_controls_train_and_record_what_they_trained_on(smoke_dir, prefs_dir, tmp_path, variant, constant):
    out = tmp_path / variant
    train_hae_dpo(*params_for(smoke_dir, prefs_dir, out, hae_variant=variant, hae_constant_margin=constant))
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["constant_margin"] == saved["config"]["hae_constant_margin"] == constant
    assert saved["preference_term"] == (variant != "nll_only")
    logs = [e for e in saved["log_history"] if "loss" in e]
    assert logs and all({"hae/dpo_loss", "hae/chosen_nll"} <= set(e) for e in logs)
    if variant == "const":
        assert all(e["hae/margin_mean"] == pytest.approx(constant) for e in logs)
    else:  # the loss is the chosen NLL alone
        assert all(e["loss"] == pytest.approx(e["hae/chosen_nll"], rel=1e-4) for e in logs)


def test_explicit_reference_and_lora(smoke_dir, prefs_dir, tmp_path):
    other = build_tiny_model("smoke", tmp_path / "other", seed=1)  # a different reference: rewards ≠ 0 at step 1
    metrics = train_hae_dpo(*params_for(smoke_dir, prefs_dir, tmp_path / "ref", ref_model_name_or_path=str(other), max_steps=1))
    first = metrics["log_history"][0]
    assert metrics["reference_model"] == str(other) and abs(first["rewards/margins"]) > 1e-3
    # LoRA without ref_model_name_or_path: the reference is the policy with its adapters off, i.e. the starting model
    metrics = train_hae_dpo(*params_for(smoke_dir, prefs_dir, tmp_path / "lora", use_peft=True, lora_r=4,
                                       max_steps=2, learning_rate=1e-2))
    logs = [e for e in metrics["log_history"] if "loss" in e]
    assert logs[0]["rewards/margins"] == 0.0 and logs[1]["rewards/margins"] != 0.0
    assert (tmp_path / "lora" / "final" / "adapter_config.json").is_file()


class CrashBeforeStep(TrainerCallback):
    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            raise RuntimeError("simulated crash")


def test_rerun_resumes_from_the_last_checkpoint(smoke_dir, prefs_dir, tmp_path, capsys):
    out = tmp_path / "resume"
    params = params_for(smoke_dir, prefs_dir, out, max_steps=5, save_steps=2, per_device_train_batch_size=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_hae_dpo(*params, callbacks=[CrashBeforeStep(4)])
    assert last_checkpoint(out).name == "checkpoint-2"
    metrics = train_hae_dpo(*params)
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    assert metrics["resumed_from"] == str(out / "checkpoint-2") and metrics["global_step"] == 5
    logs = [e for e in json.loads((out / METRICS_FILE).read_text())["log_history"] if "loss" in e]
    assert [e["step"] for e in logs] == [1, 2, 3, 4, 5] and all("hae/margin_mean" in e for e in logs)


# --- data ----------------------------------------------------------------------------------------

def test_preference_lengths_equal_the_collators(smoke_dir, tmp_path):
    _, processor = load_model_and_processor(smoke_dir)
    rows = load_preferences(save_rows(preference_rows(3, big={1: 128, 2: 96}), tmp_path / "mixed"))[0]
    collator = DataCollatorForVisionPreference(processor=processor)
    expected = [int(collator([row])["attention_mask"].sum(dim=1).max()) for row in rows]
    assert preference_lengths(rows, processor) == expected and len(set(expected)) == 3


@pytest.mark.parametrize("change, message", [
    ({"error_type": "color"}, r"row pref-002, field 'error_type': error_type 'color' not in"),
    ({"severity": None}, r"row pref-002, field 'severity': severity None not in"),
    ({"chosen": "  "}, r"row pref-002, field 'chosen': empty text"),
    ({"rejected": "Row 2: move the blue square to the right. "}, r"row pref-002, field 'rejected': rejected is the"),
    ({"images": [_image(0, 64, False)]}, r"row pref-002, field 'images': 1 images; a preference row has"),
])
def test_bad_row_is_named(tmp_path, change, message):
    rows = preference_rows(4)
    rows[2].update(change)
    folder = save_rows(rows, tmp_path / "bad")
    with pytest.raises(RecordError, match=f"file {re.escape(str(folder))}, {message}"):
        load_preferences(folder)


def test_missing_column_and_folder_are_named(tmp_path):
    rows = [{k: v for k, v in row.items() if k != "severity"} for row in preference_rows(2)]
    features = datasets.Features({k: v for k, v in PREFERENCE_FEATURES.items() if k != "severity"})
    folder = save_rows(rows, tmp_path / "no-severity", features)
    with pytest.raises(RecordError, match=r"field 'severity': missing column\(s\) \['severity'\]"):
        load_preferences(folder)
    with pytest.raises(RecordError, match="does not exist"):
        load_preferences(tmp_path / "missing")


def test_skipped_and_overlong_rows_are_counted_never_trained_on(smoke_dir, tmp_path):
    rows = preference_rows(8, big={5: 128})
    rows[1]["error_type"] = "colour"
    rows[6]["chosen"] = ""
    data = save_rows(rows, tmp_path / "data")
    with pytest.raises(RecordError, match="row pref-001, field 'error_type'"):
        train_hae_dpo(*params_for(smoke_dir, data, tmp_path / "strict"))
    _, processor = load_model_and_processor(smoke_dir)
    short = preference_lengths(load_preferences(save_rows(preference_rows(1), tmp_path / "one"))[0], processor)[0]
    out = tmp_path / "lenient"
    metrics = train_hae_dpo(*params_for(smoke_dir, data, out, bad_rows="skip", max_length=short,
                                       max_steps=1))
    skipped = [json.loads(line) for line in (out / SKIPPED_FILE).read_text().splitlines()]
    assert [(s["row"], s["id"], s["field"]) for s in skipped] == [(1, "pref-001", "error_type"),
                                                                   (6, "pref-006", "chosen")]
    assert (metrics["num_skipped_rows"], metrics["num_dropped_samples"], metrics["num_train_samples"]) == (2, 1, 5)
    dropped = [json.loads(line) for line in (out / "dropped_samples.jsonl").read_text().splitlines()]
    assert [d["id"] for d in dropped] == ["pref-005"]
    with pytest.raises(ConfigError, match="bad_rows 'drop' is not one of"):
        params_for(smoke_dir, data, out, bad_rows="drop")


# --- cluster path --------------------------------------------------------------------------------

@pytest.mark.slow
def test_zero3_two_cpu_processes_under_accelerate_launch(smoke_dir, prefs_dir, tmp_path):
    out = tmp_path / "zero3"
    recipe = tmp_path / "zero3.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(smoke_dir), "dataset_path": str(prefs_dir), "learning_rate": 1.0e-3,
        "max_steps": 4, "per_device_train_batch_size": 1, "global_batch_size": 4, "save_steps": 2,
        "logging_steps": 1, "warmup_steps": 0.0, "hae_variant": "hae", "bf16": False, "activation_checkpointing": False,
    }))
    run, elapsed = launch_zero3_cpu("editcaption.train.hae_dpo", recipe, out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "global batch 4 = 1 per device x 2 process(es) x 2 gradient-accumulation step(s)" in run.stdout
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4 and math.isfinite(metrics["train_loss"])
    logs = [e for e in metrics["log_history"] if "loss" in e]
    assert len(logs) == 4 and all("hae/margin_mean" in e and "rewards/margins" in e for e in logs)
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    model, _ = load_model_and_processor(out / "final")  # ZeRO-3 gathers the full weights at save
    info = json.loads((smoke_dir / "editcaption_tiny.json").read_text())
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]
    print(f"2-process ZeRO-3 CPU HAE-DPO run: {elapsed:.1f} s wall, {metrics['train_runtime']:.2f} s training, "
          f"{metrics['train_runtime'] / 4:.2f} s/step")
