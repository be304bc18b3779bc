"""SFT on the tiny Qwen3-VL: recipes, batch arithmetic, full/LoRA/frozen training, drops, resume, DeepSpeed."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import datasets
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import AutoModelForImageTextToText, TrainerCallback

from launch_helper import launch_zero3_cpu

from editcaption.config import ConfigError
from editcaption.models import build_tiny_model, load_model_and_processor
from editcaption.prompts import build_sft_example, generate_instructions
from editcaption.records import RecordError
from editcaption.eval import summary, targeted
from editcaption.train import sft
from editcaption.train.common import describe_batch, last_checkpoint, merge_lora, saved_checkpoints
from editcaption.train.configs import gradient_accumulation
from editcaption.train.recipe import build_stage_args, parse_stage_args, read_recipe
from editcaption.train.sft import (
    DROPPED_FILE,
    METRICS_FILE,
    load_sft_dataset,
    sample_lengths,
    train_sft,
)

REPO = Path(__file__).resolve().parents[1]
ACCELERATE_DIR = REPO / "params" / "accelerate"
COLORS = [(220, 40, 40), (40, 160, 60), (40, 80, 220), (230, 200, 40), (150, 60, 200), (240, 140, 30)]


def _image(index: int, size: int, shifted: bool) -> Image.Image:
    image = Image.new("RGB", (size, size), (235, 235, 235))
    x = size // 2 if shifted else size // 8
    ImageDraw.Draw(image).rectangle([x, size // 4, x + size // 4, size // 2], fill=COLORS[index % len(COLORS)])
    return image


def edit_pairs(n: int, size: int = 64, big: dict[int, int] | None = None) -> datasets.Dataset:
    """Edit-pair rows (id, source_image, target_image, instruction, category); `big` gives row → image size."""
    rows = []
    for i in range(n):
        side = (big or {}).get(i, size)
        rows.append({
            "id": f"pair-{i:03d}",
            "source_image": _image(i, side, shifted=False),
            "target_image": _image(i, side, shifted=True),
            "instruction": "Move the square to the right.",
            "category": "structural",
        })
    features = datasets.Features({
        "id": datasets.Value("string"), "source_image": datasets.Image(), "target_image": datasets.Image(),
        "instruction": datasets.Value("string"), "category": datasets.Value("string"),
    })
    return datasets.Dataset.from_list(rows, features=features)


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory) -> Path:
    return build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0)


@pytest.fixture(scope="module")
def pairs_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("data") / "pairs"
    edit_pairs(8).save_to_disk(str(folder))
    return folder


CPU = {"bf16": False, "activation_checkpointing": False}  # what every CPU recipe sets (TRL's defaults are GPU ones)


def params_for(smoke_dir, data_dir, out_dir, **fields):
    """(CaptionSFTConfig, VisionModelConfig) of a short run, as the entry point builds them from a recipe."""
    base = {
        "model_name_or_path": str(smoke_dir), "dataset_path": str(data_dir), "output_dir": str(out_dir),
        "learning_rate": 1e-3, "max_steps": 3, "per_device_train_batch_size": 2, "logging_steps": 1,
        "save_steps": 100, "warmup_steps": 0.0, **CPU,
    }
    return build_stage_args("sft", {**base, **fields})


# --- recipes and batch arithmetic ----------------------------------------------------------------

def test_recipe_fields_reach_trls_configs_typed_and_the_command_line_wins(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("learning_rate: 1e-5\nmax_length: 8192\nlora_target_modules: [q_proj, v_proj]\n"  # 1e-5: text
                      "bf16: false\nactivation_checkpointing: false\nglobal_batch_size: 4\n"
                      "per_device_train_batch_size: 2\nfreeze_vision_tower: true\n")
    args, model_args = parse_stage_args("sft", ["--config", str(recipe), "--output_dir", str(tmp_path / "o")])
    assert (args.learning_rate, args.max_length, args.gradient_accumulation_steps) == (1e-5, 8192, 2)
    assert model_args.lora_target_modules == ["q_proj", "v_proj"] and model_args.freeze_vision_tower
    assert model_args.dtype == "auto"  # VisionModelConfig's default: the checkpoint's own dtype
    args, model_args = parse_stage_args("sft", ["--config", str(recipe), "--output_dir", str(tmp_path / "o"),
                                                "--learning_rate", "2e-4", "--lora_target_modules", "q_proj", "k_proj",
                                                "--max_steps", "7"])
    assert (args.learning_rate, args.max_steps, model_args.lora_target_modules) == (2e-4, 7, ["q_proj", "k_proj"])


def test_a_recipe_key_no_dataclass_declares_is_named_with_its_file(tmp_path, capsys):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text("learnin_rate: 1.0e-5\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'learnin_rate' .*did you mean learning_rate"):
        read_recipe(recipe, "sft")
    with pytest.raises(SystemExit):
        parse_stage_args("sft", ["--config", str(recipe)])
    assert "unknown key 'learnin_rate'" in capsys.readouterr().err
    recipe.write_text("hae_tau: 2.0\n")  # a DPO field is not an SFT one
    with pytest.raises(ConfigError, match="unknown key 'hae_tau'"):
        read_recipe(recipe, "sft")
    assert read_recipe(recipe, "dpo") == {"hae_tau": 2.0}
    recipe.write_text("per_device_train_batch_size: 2.5\n")  # a number of the wrong kind, named with its file
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'per_device_train_batch_size' expects int, found float 2.5"):
        read_recipe(recipe, "sft")
    recipe.write_text("bf16: 1\nmax_length: null\nlearning_rate: 1e-5\n")  # 1e-5: text, TrlParser parses it
    with pytest.raises(ConfigError, match="key 'bf16' expects bool or null, found int 1"):
        read_recipe(recipe, "sft")
    recipe.write_text("max_length: null\nlearning_rate: 1e-5\nnum_train_epochs: 2\n")
    assert read_recipe(recipe, "sft") == {"max_length": None, "learning_rate": "1e-5", "num_train_epochs": 2}
    with pytest.raises(ConfigError, match="recipe .*missing.yaml not found"):
        read_recipe(tmp_path / "missing.yaml", "sft")


def test_every_shipped_recipe_reads_and_builds():
    recipes = sorted((REPO / "params" / "recipes").glob("*/*.yaml"))
    assert {p.relative_to(REPO / "params" / "recipes").as_posix() for p in recipes} >= {
        "smoke/sft.yaml", "smoke/dpo.yaml", "demo/sft.yaml", "demo/dpo.yaml", "paper/sft.yaml", "paper/dpo.yaml"}
    for path in recipes:
        stage = {"sft.yaml": "sft", "dpo.yaml": "dpo"}[path.name]
        values = {**read_recipe(path, stage), "output_dir": "/tmp/unused", "bf16": False}  # no GPU here
        args, _ = build_stage_args(stage, values)
        assert args.global_batch_size == args.per_device_train_batch_size * args.gradient_accumulation_steps, path


def test_gradient_accumulation_arithmetic():
    assert gradient_accumulation(512, 2, 32) == 8  # the paper's SFT: 512 = 2 x 32 GPUs x 8
    assert gradient_accumulation(128, 1, 32) == 4
    assert gradient_accumulation(None, 4, 2) is None  # no global batch: gradient_accumulation_steps as set
    assert describe_batch(2, 32, 8) == ("global batch 512 = 2 per device x 32 process(es) "
                                        "x 8 gradient-accumulation step(s)")
    with pytest.raises(ConfigError, match=r"global_batch_size 10 is not a positive multiple .* world size 2 = 8"):
        gradient_accumulation(10, 4, 2)
    with pytest.raises(ConfigError, match="not a positive multiple"):
        gradient_accumulation(0, 1, 1)


def test_config_refuses_non_divisible_or_contradicting_global_batch(smoke_dir, pairs_dir, tmp_path):
    with pytest.raises(ConfigError, match="global_batch_size 8 is not a positive multiple"):
        params_for(smoke_dir, pairs_dir, tmp_path / "out", per_device_train_batch_size=3, global_batch_size=8)
    with pytest.raises(ConfigError, match="needs gradient_accumulation_steps 4, but it is set to 2"):
        params_for(smoke_dir, pairs_dir, tmp_path / "out", global_batch_size=8, gradient_accumulation_steps=2)
    assert not (tmp_path / "out").exists()


# --- data ----------------------------------------------------------------------------------------

def test_sample_lengths_equal_the_collators(smoke_dir, tmp_path):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    _, processor = load_model_and_processor(smoke_dir)
    folder = tmp_path / "mixed"
    edit_pairs(3, big={1: 128, 2: 96}).save_to_disk(str(folder))
    ds = load_sft_dataset(folder)
    assert set(ds.column_names) == {"id", "images", "prompt", "completion"}
    collator = DataCollatorForVisionLanguageModeling(processor=processor, completion_only_loss=True)
    expected = [int(collator([row])["attention_mask"].sum()) for row in ds]
    assert sample_lengths(ds, processor) == expected
    assert len(set(expected)) == 3  # 64, 128 and 96 px images give different token counts


def test_trl_rows_with_extra_columns_load_as_they_are(tmp_path):
    rows = [dict(build_sft_example(_image(i, 64, False), _image(i, 64, True), "Add a square."), id=f"r{i}", note="x")
            for i in range(2)]
    folder = tmp_path / "trl"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    assert load_sft_dataset(folder).column_names == datasets.load_from_disk(str(folder)).column_names


def test_bad_data_is_named(tmp_path):
    folder = tmp_path / "empty-instruction"
    ds = edit_pairs(3)
    ds = ds.map(lambda row, i: {"instruction": "" if i == 1 else row["instruction"]}, with_indices=True)
    ds.save_to_disk(str(folder))
    with pytest.raises(RecordError, match=r"row 1, field 'instruction': empty instruction"):
        load_sft_dataset(folder)
    other = tmp_path / "other"
    datasets.Dataset.from_dict({"text": ["a"]}).save_to_disk(str(other))
    with pytest.raises(RecordError, match=r"columns \['text'\] are neither TRL rows"):
        load_sft_dataset(other)
    with pytest.raises(RecordError, match="does not exist"):
        load_sft_dataset(tmp_path / "missing")


# --- training ------------------------------------------------------------------------------------

def test_full_finetune_saves_reloadable_model_and_metrics(smoke_dir, pairs_dir, tmp_path):
    out = tmp_path / "full"
    # a pixel budget of exactly 128x128: the 64 px images are scaled up to 8x8 patches (16 tokens each)
    metrics = train_sft(*params_for(smoke_dir, pairs_dir, out, global_batch_size=4, min_pixels=128 * 128,
                                   max_pixels=128 * 128))
    assert metrics["global_step"] == 3 and math.isfinite(metrics["train_loss"])
    assert metrics["gradient_accumulation_steps"] == 2 and metrics["world_size"] == 1
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["train_samples_per_second"] > 0 and saved["train_tokens"] > 0 and saved["num_train_samples"] == 8
    state = json.loads((out / "trainer_state.json").read_text())
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(math.isfinite(x) for x in losses)
    assert all("learning_rate" in e for e in state["log_history"] if "loss" in e)
    model, processor = load_model_and_processor(out / "final")
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    # the pixel budget travels with the saved processor: a 64 px image is scaled up to 128 px = 16 tokens
    assert processor.image_processor.size["shortest_edge"] == 128 * 128
    assert metrics["max_sample_tokens"] == sample_lengths(load_sft_dataset(pairs_dir), processor)[0]
    inputs = processor(images=[_image(0, 64, False)], text=["<|vision_start|><|image_pad|><|vision_end|>"])
    assert inputs["image_grid_thw"].tolist() == [[1, 8, 8]]


def test_same_seed_same_losses(smoke_dir, pairs_dir, tmp_path):
    def losses(out):
        train_sft(*params_for(smoke_dir, pairs_dir, out, max_steps=2, seed=3))
        return [e["loss"] for e in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in e]

    assert losses(tmp_path / "a") == losses(tmp_path / "b")


def test_frozen_vision_tower_and_merger_stay_unchanged(smoke_dir, pairs_dir, tmp_path):
    out = tmp_path / "frozen"
    train_sft(*params_for(smoke_dir, pairs_dir, out, freeze_vision_tower=True, freeze_merger=True))
    before, after = load_file(smoke_dir / "model.safetensors"), load_file(out / "final" / "model.safetensors")
    visual = [k for k in before if ".visual." in k]
    assert any("merger" in k for k in visual) and any(".blocks." in k for k in visual)
    assert all(torch.equal(before[k], after[k]) for k in visual)
    language = [k for k in before if "language_model.layers" in k]
    assert any(not torch.equal(before[k], after[k]) for k in language)


def test_lora_adapter_merges_into_a_loadable_model_that_generates(smoke_dir, pairs_dir, tmp_path):
    out = tmp_path / "lora"
    metrics = train_sft(*params_for(smoke_dir, pairs_dir, out, use_peft=True, lora_r=4, lora_alpha=8,
                                   lora_dropout=0.0, freeze_vision_tower=True))
    adapter = out / "final"
    assert metrics["use_peft"] and (adapter / "adapter_config.json").is_file()
    assert not (adapter / "model.safetensors").exists() and (adapter / "processor_config.json").is_file()
    keys = list(load_file(adapter / "adapter_model.safetensors"))
    assert any("language_model" in k and "lora_B" in k for k in keys)
    assert not any(".visual.blocks." in k for k in keys)  # frozen tower: no adapters there
    assert any(".visual.merger." in k for k in keys)  # the merger is not frozen: it gets adapters

    merged_dir = merge_lora(adapter, tmp_path / "merged")
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir)
    base = load_file(smoke_dir / "model.safetensors")
    name = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(merged.state_dict()[name], base[name])
    _, processor = load_model_and_processor(merged_dir)
    texts = generate_instructions(merged.eval(), processor, [(_image(0, 64, False), _image(0, 64, True))],
                                  max_new_tokens=4)
    assert len(texts) == 1 and isinstance(texts[0], str)


def test_overlong_sample_dropped_not_truncated(smoke_dir, tmp_path):
    data = tmp_path / "long"
    edit_pairs(6, big={4: 128}).save_to_disk(str(data))
    _, processor = load_model_and_processor(smoke_dir)
    lengths = sample_lengths(load_sft_dataset(data), processor)
    assert lengths[4] > lengths[0]
    out = tmp_path / "run"
    metrics = train_sft(*params_for(smoke_dir, data, out, max_steps=2, max_length=lengths[0]))
    dropped = [json.loads(line) for line in (out / DROPPED_FILE).read_text().splitlines()]
    assert dropped == [{"id": "pair-004", "row": 4, "length": lengths[4], "max_length": lengths[0]}]
    assert metrics["num_dropped_samples"] == 1 and metrics["num_train_samples"] == 5


class CrashBeforeStep(TrainerCallback):
    """Raise at the start of a given step, as a killed job would stop (the checkpoint before it is on disk)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_begin(self, args, state, control, **kwargs):
        if state.global_step == self.step - 1:
            raise RuntimeError("simulated crash")


class LoggedSteps(TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.steps.append(state.global_step)


def test_rerun_resumes_from_the_last_checkpoint(smoke_dir, pairs_dir, tmp_path, capsys):
    out = tmp_path / "resume"
    params = params_for(smoke_dir, pairs_dir, out, max_steps=6, save_steps=2, per_device_train_batch_size=1)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_sft(*params, callbacks=[CrashBeforeStep(4)])
    assert last_checkpoint(out).name == "checkpoint-2"
    (out / "checkpoint-3").mkdir()  # a checkpoint cut off while saving (no trainer_state.json) is skipped
    assert last_checkpoint(out).name == "checkpoint-2"

    logged = LoggedSteps()
    metrics = train_sft(*params_for(smoke_dir, pairs_dir, out, max_steps=6, save_steps=2,
                                    per_device_train_batch_size=1), callbacks=[logged])
    assert f"resuming from {out / 'checkpoint-2'}" in capsys.readouterr().out
    assert metrics["resumed_from"] == str(out / "checkpoint-2")
    assert logged.steps == [3, 4, 5, 6]
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["global_step"] == 6
    assert [e["step"] for e in state["log_history"] if "loss" in e] == [1, 2, 3, 4, 5, 6]


# --- choosing the checkpoint on validation -----------------------------------------------------

def _scores(p0: list[bool], mode: str = "orientation") -> pd.DataFrame:
    """Per-pair scores as `summary.score_instructions` gives them, with only what the P0 rate reads."""
    return pd.DataFrame({"id": [f"p{i}" for i in range(len(p0))], "p0": p0, f"has_{mode}": p0})


def _rates(*rows) -> pd.DataFrame:
    return pd.DataFrame([{"checkpoint": c, "step": s, "p0": r} for c, s, r in rows])


def test_the_lowest_pooled_p0_wins_and_a_tie_goes_to_the_later_step():
    assert sft.choose_checkpoint(_rates(("checkpoint-2", 2, 0.5), ("checkpoint-4", 4, 0.25), ("final", 6, 0.5))) \
        == "checkpoint-4"
    assert sft.choose_checkpoint(_rates(("checkpoint-2", 2, 0.25), ("final", 6, 0.25), ("checkpoint-4", 4, 0.25))) \
        == "final"
    with pytest.raises(ValueError, match="no checkpoint"):
        sft.choose_checkpoint(_rates())


def test_the_selection_table_pools_the_subsets_per_checkpoint_in_step_order():
    scores = {"final": {"orientation": _scores([True, True]), "detail": _scores([True, False], "detail")},
              "checkpoint-2": {"orientation": _scores([True, False]), "detail": _scores([False, False], "detail")}}
    table = sft.selection_table(scores, {"final": 4, "checkpoint-2": 2})
    assert list(table.columns) == sft.SELECTION_COLUMNS
    assert table["checkpoint"].tolist() == ["checkpoint-2", "final"] and table["step"].tolist() == [2, 4]
    assert table["n"].tolist() == [4, 4] and table["p0"].tolist() == [0.25, 0.75]
    assert table["chosen"].tolist() == [True, False]
    assert all(low <= p0 <= high for low, p0, high in zip(table["low"], table["p0"], table["high"]))
    selection = sft.CheckpointSelection(Path("m"), "checkpoint-2", 2, "note", table)
    entry = selection.metrics()
    assert (entry["chosen"], entry["chosen_step"], entry["model"], entry["scored"]) == ("checkpoint-2", 2, "m", True)
    assert [(c["checkpoint"], c["step"], c["n"], c["p0"], c["chosen"]) for c in entry["checkpoints"]] == [
        ("checkpoint-2", 2, 4, 0.25, True), ("final", 4, 4, 0.75, False)]
    assert all(len(c["p0_ci"]) == 2 for c in entry["checkpoints"])
    assert json.loads(json.dumps(entry)) == entry  # metrics.json takes it as it is


def _checkpoint(folder: Path, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text("{}")
    if complete:
        (folder / "trainer_state.json").write_text("{}")
    return folder


def test_the_candidates_are_the_complete_checkpoints_before_the_final_step_then_final(tmp_path):
    for step in (2, 4, 6, 8):
        _checkpoint(tmp_path / f"checkpoint-{step}")
    _checkpoint(tmp_path / "checkpoint-5", complete=False)  # cut off while saving
    final = _checkpoint(tmp_path / "final")
    assert [step for step, _ in saved_checkpoints(tmp_path)] == [2, 4, 6, 8]
    models = sft.checkpoint_models(tmp_path, final, 6, merged_out=tmp_path / "merged")
    # checkpoint-6 holds the final weights (scored once, as final); checkpoint-8 is left from a longer run
    assert models == {"checkpoint-2": (2, tmp_path / "checkpoint-2"), "checkpoint-4": (4, tmp_path / "checkpoint-4"),
                      "final": (6, final)}


def test_the_final_model_is_kept_and_the_note_says_why(tmp_path, capsys):
    off = sft.select_checkpoint(tmp_path, {"orientation": object()}, final_model=tmp_path / "final", final_step=8,
                                enabled=False)
    assert (off.model, off.chosen, off.chosen_step, off.table.empty) == (tmp_path / "final", "final", 8, True)
    assert "select_checkpoint is False" in off.note and off.metrics()["checkpoints"] == []
    none = sft.select_checkpoint(tmp_path, {}, final_model=tmp_path / "final", final_step=8)
    assert none.model == tmp_path / "final" and "no targeted validation subsets" in none.note
    assert not none.metrics()["scored"] and "no targeted validation subsets" in capsys.readouterr().out
    assert sft.validation_subsets("", "no-such-run", tmp_path) == {}  # notebook 01 drew none: said, not an error
    with pytest.raises(FileNotFoundError):
        sft.validation_subsets(str(tmp_path / "missing"), "no-such-run", tmp_path)  # a path given must exist


def test_every_saved_checkpoint_is_scored_on_validation_and_the_choice_is_recorded(smoke_dir, pairs_dir, tmp_path):
    out = tmp_path / "run"
    metrics = train_sft(*params_for(smoke_dir, pairs_dir, out, max_steps=4, save_steps=2, save_total_limit=None))
    final = sft.final_model_dir(out, merged_out=out / "merged")
    subsets, _ = targeted.draw_subsets(2, split="validation", seed=0, exclude={}, out_dir=tmp_path / "validation")
    selection = sft.select_checkpoint(out, targeted.load_subsets(tmp_path / "validation"), final_model=final,
                                      final_step=metrics["global_step"], batch_size=8, max_new_tokens=4)
    assert selection.table["checkpoint"].tolist() == ["checkpoint-2", "final"]  # checkpoint-4 is final's weights
    assert selection.table["n"].tolist() == [6, 6] and selection.table["chosen"].sum() == 1
    chosen = selection.table.loc[selection.table["chosen"]].iloc[0]
    assert chosen["p0"] == selection.table["p0"].min() and selection.chosen == chosen["checkpoint"]
    assert selection.model == (final if selection.chosen == "final" else out / "checkpoint-2")
    assert sorted(p.name for p in (out / sft.SELECTION_DIR / "checkpoint-2").iterdir()) == sorted(
        f"{mode}.jsonl" for mode in subsets)  # generations cached per candidate and subset
    entry = summary.sft_stage_metrics(metrics, 1.0, _comparison(), selection.model, selection.metrics())
    assert entry["sft_model"] == str(selection.model) and entry["checkpoint_selection"]["chosen"] == selection.chosen


def test_a_lora_checkpoint_is_merged_into_a_full_model_to_score(smoke_dir, pairs_dir, tmp_path):
    out = tmp_path / "lora"
    train_sft(*params_for(smoke_dir, pairs_dir, out, max_steps=4, save_steps=2, use_peft=True, lora_r=4, lora_alpha=8,
                          lora_dropout=0.0, freeze_vision_tower=True))
    final = sft.final_model_dir(out, merged_out=out / "merged")
    models = sft.checkpoint_models(out, final, 4, merged_out=out / "selection")
    assert models == {"checkpoint-2": (2, out / "selection" / "checkpoint-2"), "final": (4, final)}
    assert (out / "checkpoint-2" / "adapter_config.json").is_file()
    model, _ = load_model_and_processor(models["checkpoint-2"][1])
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"


def _comparison():
    result = {"S": 1.0}
    return summary.Comparison({}, {}, {"base": result, "SFT": result}, {}, {}, pd.DataFrame())


def test_cli_rejects_bad_override(tmp_path, capsys):
    from editcaption.train.sft import main

    recipe = tmp_path / "r.yaml"
    recipe.write_text("bf16: false\n")
    with pytest.raises(SystemExit):
        main(["--config", str(recipe), "--max_steps", "many"])
    err = capsys.readouterr().err
    assert "argument --max_steps" in err and "invalid int value: 'many'" in err


# --- cluster path --------------------------------------------------------------------------------

def test_accelerate_and_deepspeed_configs_load():
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    configs = sorted(ACCELERATE_DIR.glob("*.yaml"))
    assert {p.stem for p in configs} >= {"zero2", "zero3", "zero3_offload", "zero3_cpu_test"}
    stages = {}
    for path in configs:
        config = load_config_from_file(str(path))
        assert config.distributed_type == "DEEPSPEED", path
        raw = yaml.safe_load(path.read_text())
        assert "mixed_precision" not in raw, f"{path}: mixed_precision conflicts with deepspeed_config_file"
        ds_file = REPO / config.deepspeed_config["deepspeed_config_file"]
        assert ds_file.is_file(), path
        plugin = DeepSpeedPlugin(hf_ds_config=str(ds_file))
        stages[path.stem] = plugin.zero_stage
    assert stages == {"zero2": 2, "zero3": 3, "zero3_offload": 3, "zero3_cpu_test": 3}
    for path in ACCELERATE_DIR.glob("*.json"):
        ds = json.loads(path.read_text())
        assert ds["train_micro_batch_size_per_gpu"] == "auto" and ds["gradient_accumulation_steps"] == "auto"
    offload = json.loads((ACCELERATE_DIR / "ds_zero3_offload.json").read_text())["zero_optimization"]
    assert offload["offload_param"]["device"] == offload["offload_optimizer"]["device"] == "cpu"


def test_slurm_script_builds_the_launch_of_a_recipe(tmp_path):
    env = {**os.environ, "SLURM_JOB_NUM_NODES": "4", "SLURM_GPUS_ON_NODE": "8", "MAIN_PROCESS_IP": "node-a",
           "DRY_RUN": "1", "PYTHON": sys.executable}
    recipe = "params/recipes/paper/sft.yaml"
    run = subprocess.run(["bash", "scripts/slurm_train.sh", recipe, "--max_steps", "5"], cwd=REPO, env=env,
                         capture_output=True, text=True, check=True)
    command = run.stdout.strip().splitlines()[-1]
    assert command.startswith("accelerate launch --config_file params/accelerate/zero3.yaml --num_machines 4 "
                              "--num_processes 32 --machine_rank $SLURM_NODEID --main_process_ip node-a")
    assert command.rstrip().endswith(f"-m editcaption.train.sft --config {recipe} --max_steps 5")
    dpo = subprocess.run(["bash", "scripts/slurm_train.sh", "params/recipes/paper/dpo.yaml", "hae_dpo"], cwd=REPO,
                         env={**env, "ACCELERATE_CONFIG": "params/accelerate/zero3_offload.yaml"},
                         capture_output=True, text=True, check=True).stdout
    assert "--config_file params/accelerate/zero3_offload.yaml" in dpo and "-m editcaption.train.hae_dpo" in dpo
    missing = subprocess.run(["bash", "scripts/slurm_train.sh", str(tmp_path / "none.yaml")], cwd=REPO, env=env,
                             capture_output=True, text=True)
    assert missing.returncode == 2 and "none.yaml not found" in missing.stderr


@pytest.mark.slow
@pytest.mark.parametrize("moe", [False, True], ids=["dense", "moe"])
def test_zero3_two_cpu_processes_under_accelerate_launch(smoke_dir, pairs_dir, tmp_path, moe):
    if moe:  # the MoE checkpoint is in transformers' layout: needs the ZeRO-3-aware expert transpose
        smoke_dir = build_tiny_model("smoke", tmp_path / "moe", moe=True)
    out = tmp_path / "zero3"
    recipe = tmp_path / "zero3.yaml"
    recipe.write_text(yaml.safe_dump({
        "model_name_or_path": str(smoke_dir), "dataset_path": str(pairs_dir), "learning_rate": 1.0e-3,
        "max_steps": 4, "per_device_train_batch_size": 1, "global_batch_size": 4, "save_steps": 2,
        "logging_steps": 1, "warmup_steps": 0.0, **CPU,
    }))
    run, elapsed = launch_zero3_cpu("editcaption.train.sft", recipe, out)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "global batch 4 = 1 per device x 2 process(es) x 2 gradient-accumulation step(s)" in run.stdout
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["world_size"] == 2 and metrics["global_step"] == 4 and math.isfinite(metrics["train_loss"])
    assert (out / "checkpoint-2" / "trainer_state.json").is_file()
    model, _ = load_model_and_processor(out / "final")  # ZeRO-3 gathers the full weights at save
    info = json.loads((smoke_dir / "editcaption_tiny.json").read_text())
    assert type(model).__name__ == info["architecture"]
    assert sum(p.numel() for p in model.parameters()) == info["num_parameters"]
    print(f"2-process ZeRO-3 CPU run ({'moe' if moe else 'dense'}): {elapsed:.1f} s wall, "
          f"{metrics['train_runtime']:.2f} s training, {metrics['train_runtime'] / 4:.2f} s/step")


def test_launched_processes_share_the_cpu_cores(monkeypatch):
    """accelerate launch defaults to one thread per process (a 2-core laptop trained on one core)."""
    import os

    from editcaption.train import launch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    assert launch.cpu_threads_per_process(1) == 8 and launch.cpu_threads_per_process(3) == 2
    command = launch.accelerate_command("editcaption.train.sft", "p.yaml", num_processes=2)
    assert command[command.index("--num_cpu_threads_per_process") + 1] == "4"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert launch.cpu_threads_per_process(2) == 3


def test_one_plain_process_runs_the_module_with_the_launchers_environment(monkeypatch):
    """No accelerate config and one process: `python -m MODULE --config FILE`, with the variables accelerate's
    simple launcher sets; a config or several processes still go through `accelerate launch`."""
    import os
    import sys

    from editcaption.train import launch

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    command, env = launch.launch_command("editcaption.train.hae_dpo", "p.yaml")
    assert command == [sys.executable, "-m", "editcaption.train.hae_dpo", "--config", "p.yaml"]
    assert env["OMP_NUM_THREADS"] == "2" and env["ACCELERATE_MIXED_PRECISION"] == "no"
    for kwargs in ({"num_processes": 2}, {"accelerate_config": "params/accelerate/zero3_cpu_test.yaml"}):
        command, env = launch.launch_command("editcaption.train.sft", "p.yaml", **kwargs)
        assert command[1:3] == ["-m", "accelerate.commands.launch"] and env == {}, kwargs
