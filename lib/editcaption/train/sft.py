"""Stage 1 SFT (paper §3.2, eq. 1): cross-entropy on the instruction tokens given the two images, with TRL.

    python -m editcaption.train.sft --config params/recipes/demo/sft.yaml [--field value ...]
    accelerate launch --config_file params/accelerate/zero3.yaml -m editcaption.train.sft --config ...

The fields are `configs.CaptionSFTConfig` (TRL's SFTConfig) and `configs.VisionModelConfig` (TRL's ModelConfig).
Trains with `SFTTrainer` (on prompt/completion rows TRL's loss covers the completion only), checkpoints every
`save_steps`, resumes from the last complete checkpoint in `output_dir`, and writes `final/` (model or LoRA
adapter + processor), `train_metrics.json`, `trainer_state.json` (log_history) and, when `max_length` drops
samples, `dropped_samples.jsonl`.

After training, notebook 02 chooses which model is "the SFT model" on validation data, never on the test split
(`select_checkpoint`): every saved `checkpoint-<step>` and the final model write an instruction for every pair
of notebook 01's targeted validation subsets, and the one with the lowest pooled P0 error rate wins (ties: the
later step), so preference training starts from the SFT model that has the skill.
"""
from __future__ import annotations

import io
import copy
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from editcaption import paths
from editcaption.eval import targeted
from editcaption.prompts import build_sft_example
from editcaption.records import RecordError, load_train_split
from editcaption.train.common import (
    check_output_dir,
    describe_batch,
    effective_config,
    last_checkpoint,
    load_for_training,
    merge_lora,
    run_entry_point,
    saved_checkpoints,
)
from editcaption.train.configs import CaptionSFTConfig, VisionModelConfig, world_size

STAGE = "02_sft"
TRL_COLUMNS = {"images", "prompt", "completion"}
PAIR_COLUMNS = {"source_image", "target_image", "instruction"}
DROPPED_FILE = "dropped_samples.jsonl"
METRICS_FILE = "train_metrics.json"
SELECTION_DIR = "checkpoint_selection"  # the candidates' validation generations (cached), merged LoRA checkpoints
FINAL = "final"
SELECTION_COLUMNS = ["checkpoint", "step", "n", "p0", "low", "high", "chosen"]


def load_sft_dataset(path: str | Path):
    """A `datasets` folder of TRL vision rows, or of edit pairs converted by `build_sft_example` (by columns)."""
    import datasets

    folder = Path(path)
    ds = load_train_split(folder, "SFT data")
    columns = set(ds.column_names)
    if TRL_COLUMNS <= columns:
        return ds
    if not PAIR_COLUMNS <= columns:
        raise RecordError(
            f"columns {sorted(columns)} are neither TRL rows {sorted(TRL_COLUMNS)} "
            f"nor edit pairs {sorted(PAIR_COLUMNS)}",
            file=folder,
        )
    for row, instruction in enumerate(ds["instruction"]):
        if not isinstance(instruction, str) or not instruction.strip():
            raise RecordError("empty instruction: SFT needs a target text for every pair", file=folder, row=row,
                              field="instruction")
    raw = ds.cast_column("source_image", datasets.Image(decode=False)).cast_column(
        "target_image", datasets.Image(decode=False))
    keep = ["id"] if "id" in columns else []

    def convert(example):
        return build_sft_example(example["source_image"], example["target_image"], example["instruction"])

    converted = raw.map(convert, remove_columns=[c for c in raw.column_names if c not in keep])
    return converted.cast_column("images", datasets.List(datasets.Image()))


def _image_size(image) -> tuple[int, int]:
    """(width, height) of a PIL image or of an undecoded `datasets` image ({bytes, path}); reads the header only."""
    from PIL import Image

    if hasattr(image, "size") and not isinstance(image, dict):
        return image.size
    if image.get("bytes"):
        with Image.open(io.BytesIO(image["bytes"])) as opened:
            return opened.size
    with Image.open(image["path"]) as opened:
        return opened.size


def sample_lengths(dataset, processor) -> list[int]:
    """Tokens per sample as the vision collator builds them (chat text + each image's merged patches).

    Image tokens come from the image sizes and the processor's resize rule, so no pixels are decoded.
    """
    import datasets
    from trl.data_utils import apply_chat_template, prepare_multimodal_messages

    image_processor, tokenizer = processor.image_processor, processor.tokenizer
    merge = getattr(image_processor, "merge_size", 1) ** 2
    image_token = getattr(processor, "image_token", None)
    if image_token is None or not hasattr(image_processor, "get_number_of_image_patches"):
        raise TypeError(f"{type(processor).__name__}: sample lengths need a Qwen-VL-style processor "
                        "(image_token and image_processor.get_number_of_image_patches)")
    feature = dataset.features["images"]
    if isinstance(feature, (datasets.List, datasets.Sequence)) and isinstance(feature.feature, datasets.Image):
        dataset = dataset.cast_column("images", datasets.List(datasets.Image(decode=False)))
    lengths = []
    for row in dataset.select_columns(["images", "prompt", "completion"]):
        images = row["images"]
        example = {
            "prompt": prepare_multimodal_messages(row["prompt"], images=images),
            "completion": prepare_multimodal_messages(row["completion"]),
        }
        texts = apply_chat_template(example, processor)
        placeholders = texts["prompt"].count(image_token)
        if placeholders != len(images):
            raise ValueError(f"prompt has {placeholders} image placeholders for {len(images)} images")
        text_tokens = sum(len(tokenizer(texts[k], add_special_tokens=False)["input_ids"])
                          for k in ("prompt", "completion"))
        image_tokens = sum(
            image_processor.get_number_of_image_patches(height, width) // merge
            for width, height in map(_image_size, images)
        )
        lengths.append(text_tokens + image_tokens - len(images))
    return lengths


def drop_long_samples(dataset, lengths: list[int], max_length: int | None, report_file: Path | None):
    """Keep samples of at most max_length tokens; list the others (id, row, length) in report_file (main process)."""
    if max_length is None:
        return dataset, []
    ids = dataset["id"] if "id" in dataset.column_names else [str(i) for i in range(len(dataset))]
    dropped = [{"id": ids[i], "row": i, "length": n, "max_length": max_length}
               for i, n in enumerate(lengths) if n > max_length]
    if report_file is not None:
        report_file.parent.mkdir(parents=True, exist_ok=True)
        report_file.write_text("".join(json.dumps(d) + "\n" for d in dropped), encoding="utf-8")
    if len(dropped) == len(dataset):
        raise ValueError(f"every sample is longer than max_length={max_length} (shortest: {min(lengths)} tokens)")
    if dropped and report_file is not None:
        print(f"dropped {len(dropped)} of {len(dataset)} samples longer than max_length={max_length} tokens "
              f"(not truncated; ids in {report_file})")
    keep = [i for i, n in enumerate(lengths) if n <= max_length]
    return dataset.select(keep), dropped


def train_sft(args: CaptionSFTConfig, model_args: VisionModelConfig, *, callbacks: list | None = None) -> dict[str, Any]:
    """Run (or resume) SFT; returns the metrics also written to output_dir/train_metrics.json."""
    from trl import SFTTrainer

    if not args.dataset_path:
        raise ValueError("dataset_path is not set (the SFT set's `datasets` folder)")
    output_dir = check_output_dir(args)
    n_processes = world_size()
    per_device, accumulation = args.per_device_train_batch_size, args.gradient_accumulation_steps
    main = args.process_index == 0
    if main:
        print(describe_batch(per_device, n_processes, accumulation))

    model, processor, peft_config = load_for_training(model_args)
    with args.main_process_first(desc="SFT data"):  # the main process converts and caches; the others read it
        dataset = load_sft_dataset(args.dataset_path)
    lengths = sample_lengths(dataset, processor)
    dataset, dropped = drop_long_samples(dataset, lengths, args.max_length, output_dir / DROPPED_FILE if main else None)
    config = effective_config(args, model_args)
    args = copy.copy(args)  # the caller's config stays as given
    args.max_length = None  # longer samples are gone: TRL must not truncate (it would cut image tokens)
    if main:
        mean = sum(lengths) / len(lengths)
        print(f"{len(dataset)} training samples; tokens per sample: max {max(lengths)}, mean {mean:.0f}")

    trainer = SFTTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                         peft_config=peft_config, callbacks=callbacks)
    checkpoint = last_checkpoint(output_dir)
    if checkpoint is not None and main:
        print(f"resuming from {checkpoint}")
    result = trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    final_dir = output_dir / "final"
    trainer.save_model(str(final_dir))
    trainer.save_state()
    runtime = result.metrics.get("train_runtime")
    tokens = getattr(trainer, "_total_train_tokens", None)  # TRL's count over all processes, this run only
    metrics = {
        "train_loss": result.training_loss,
        "train_runtime": runtime,
        "train_samples_per_second": result.metrics.get("train_samples_per_second"),
        "train_steps_per_second": result.metrics.get("train_steps_per_second"),
        "global_step": trainer.state.global_step,
        "train_tokens": tokens,
        "train_tokens_per_second": tokens / runtime if tokens and runtime else None,
        "world_size": n_processes,
        "per_device_train_batch_size": per_device,
        "gradient_accumulation_steps": accumulation,
        "global_batch_size": per_device * n_processes * accumulation,
        "num_train_samples": len(dataset),
        "num_dropped_samples": len(dropped),
        "max_sample_tokens": max(lengths),
        "resumed_from": str(checkpoint) if checkpoint else None,
        "use_peft": model_args.use_peft,
        "final_dir": str(final_dir),
        "config": config,
    }
    if main:  # save_model above also wrote the processor (the Trainer's processing_class) to final/
        (output_dir / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        print(f"saved {'adapter' if model_args.use_peft else 'model'} and processor to {final_dir}")
    return metrics


def read_train_metrics(output_dir: str | Path) -> dict[str, Any]:
    """train_metrics.json plus the trainer's log_history (trainer_state.json) of a finished run."""
    output_dir = Path(output_dir)
    metrics_file = output_dir / METRICS_FILE
    if not metrics_file.exists():
        raise FileNotFoundError(f"{metrics_file} not found: the training run did not finish")
    metrics = json.loads(metrics_file.read_text(encoding="utf-8"))
    state_file = output_dir / "trainer_state.json"
    metrics["log_history"] = json.loads(state_file.read_text())["log_history"] if state_file.exists() else []
    return metrics


def final_model_dir(output_dir: str | Path, *, merged_out: str | Path) -> Path:
    """The trained model as a full checkpoint: final/ itself, or for a LoRA run the adapter merged into
    its base model and saved to `merged_out` (what generation and the DPO stage load)."""

    final_dir = Path(output_dir) / "final"
    if (final_dir / "adapter_config.json").exists():
        return merge_lora(final_dir, merged_out)
    if not (final_dir / "config.json").exists():
        raise FileNotFoundError(f"{final_dir} holds neither a model nor a LoRA adapter")
    return final_dir


def validation_subsets(override: str, run_name: str, output_root: str | Path = "outputs") -> dict:
    """The targeted validation subsets for choosing the checkpoint: `override` when set (it must hold them), else
    notebook 01's targeted/validation of the run; {} with a line saying why when the run has none (notebook 01
    draws them only for synthetic pairs and n_targeted_validation > 0)."""
    if override:
        return targeted.load_subsets(paths.upstream(override, run_name, "01_dataset_construction",
                                                    "targeted/validation", output_root))
    folder = paths.stage_dir(run_name, "01_dataset_construction", output_root) / "targeted" / "validation"
    if not folder.is_dir():
        print(f"no targeted validation subsets ({folder} does not exist: notebook 01 draws them for synthetic pairs "
              "with n_targeted_validation > 0)")
        return {}
    subsets = targeted.load_subsets(folder)
    print(f"targeted validation subsets: {({mode: len(pairs) for mode, pairs in subsets.items()})}")
    return subsets


def checkpoint_models(output_dir: str | Path, final_model: str | Path, final_step: int, *,
                      merged_out: str | Path) -> dict[str, tuple[int, Path]]:
    """The candidates, label -> (step, full model folder), by step: every complete `checkpoint-<step>` the trainer
    saved before the final step (a LoRA checkpoint merged into its base under merged_out/checkpoint-<step>), then
    `final` at `final_step` (`final_model`, as `final_model_dir` gave it). A checkpoint at the final step holds the
    final model's weights and is not scored twice; one past it (left by a longer earlier run) is no candidate."""
    models = {}
    for step, folder in saved_checkpoints(output_dir):
        if step >= final_step:
            continue
        if (folder / "adapter_config.json").is_file():
            folder = merge_lora(folder, Path(merged_out) / folder.name)
        models[f"checkpoint-{step}"] = (step, Path(folder))
    models[FINAL] = (int(final_step), Path(final_model))
    return models


def choose_checkpoint(table: pd.DataFrame) -> str:
    """The label (`checkpoint`) of the row with the lowest pooled P0 rate (`p0`); on a tie the later `step`."""
    if table.empty:
        raise ValueError("no checkpoint was scored")
    ranked = table.sort_values(["p0", "step"], ascending=[True, False], kind="stable")
    return str(ranked.iloc[0]["checkpoint"])


def selection_table(scores: Mapping[str, Mapping[str, pd.DataFrame]], steps: Mapping[str, int], *,
                    seed: int = 0) -> pd.DataFrame:
    """One row per candidate, by step: its pooled P0 error rate over every validation subset's pairs with the
    95 % bootstrap interval (`targeted.pooled_rate`), and `chosen` (`choose_checkpoint`).
    `scores`: label -> mode -> per-pair scores (`targeted.score_models`); `steps`: label -> training step."""
    rows = [{"checkpoint": label, "step": int(steps[label]), **targeted.pooled_rate(by_mode, measure="p0", seed=seed)}
            for label, by_mode in scores.items()]
    table = pd.DataFrame(rows, columns=SELECTION_COLUMNS[:-1]).sort_values("step", kind="stable").reset_index(drop=True)
    table["chosen"] = table["checkpoint"] == choose_checkpoint(table)
    return table


@dataclass
class CheckpointSelection:
    """Which model notebook 02 records as the SFT model, and why: the candidates' validation P0 rates (`table`,
    empty when nothing was scored), the chosen label and model folder, and a sentence (`note`)."""

    model: Path
    chosen: str
    chosen_step: int
    note: str
    table: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=SELECTION_COLUMNS))
    scores: dict = field(default_factory=dict)  # label -> mode -> per-pair scores

    def metrics(self) -> dict:
        """The `checkpoint_selection` entry of notebook 02's metrics.json."""
        return {"criterion": "lowest pooled P0 error rate on the targeted validation subsets; ties: the later step",
                "scored": not self.table.empty, "chosen": self.chosen, "chosen_step": self.chosen_step,
                "model": str(self.model), "note": self.note,
                "checkpoints": [{"checkpoint": r.checkpoint, "step": int(r.step), "n": int(r.n), "p0": float(r.p0),
                                 "p0_ci": [float(r.low), float(r.high)], "chosen": bool(r.chosen)}
                                for r in self.table.itertuples()]}


def select_checkpoint(output_dir: str | Path, validation: Mapping, *, final_model: str | Path, final_step: int,
                      enabled: bool = True, batch_size: int = 16, max_new_tokens: int = 48,
                      seed: int = 0) -> CheckpointSelection:
    """Choose the SFT model on the targeted validation subsets (never the test split): every saved checkpoint and
    the final model (`checkpoint_models`) write an instruction for every validation pair (greedy, batched, cached
    under output_dir/checkpoint_selection/<label>/), the rule judge scores them, and the lowest pooled P0 error
    rate wins (ties: the later step). The final model is kept, with a note saying why, when `enabled` is False,
    when there are no validation subsets, or when no checkpoint was saved before the final step."""
    final = CheckpointSelection(Path(final_model), FINAL, int(final_step), "")
    if not enabled:
        final.note = "select_checkpoint is False: the final model is kept, unscored"
    elif not validation:
        final.note = ("no targeted validation subsets for this run: the final model is kept, unscored (notebook 01 "
                      "draws them for synthetic pairs with n_targeted_validation > 0)")
    if final.note:
        print(final.note)
        return final
    candidates = checkpoint_models(output_dir, final_model, final_step, merged_out=Path(output_dir) / SELECTION_DIR / "merged")
    steps = {label: step for label, (step, _) in candidates.items()}
    scores = targeted.score_models({label: str(folder) for label, (_, folder) in candidates.items()}, validation,
                                   Path(output_dir) / SELECTION_DIR, batch_size=batch_size, max_new_tokens=max_new_tokens)
    table = selection_table(scores, steps, seed=seed)
    chosen = choose_checkpoint(table)
    best = table[table["checkpoint"] == chosen].iloc[0]
    note = (f"{len(table)} candidate(s) on {int(best.n)} validation pairs; chosen: {chosen} (step {int(best.step)}), "
            f"pooled P0 {best.p0:.3f} [{best.low:.3f}, {best.high:.3f}]")
    if len(table) == 1:
        note += " (no checkpoint was saved before the final step: save_steps below max_steps adds candidates)"
    print(note)
    return CheckpointSelection(candidates[chosen][1], chosen, int(best.step), note, table, scores)


def main(argv: list[str] | None = None) -> int:
    return run_entry_point("sft", argv, train_sft)


if __name__ == "__main__":
    sys.exit(main())
