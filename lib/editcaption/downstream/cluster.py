"""Table 5 on a GPU cluster (paper §5.3): per captioner, fine-tune Step1X-Edit on its triplet export (`step1x`),
edit GEdit-Bench and ImgEdit-Bench with it, judge the edits as the benchmarks do (`gedit`, `imgedit`, through
`bench_judge`), and write the long-format rows. `run_table5` checks every requirement before any work starts.
"""
from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from editcaption.downstream.bench_judge import BenchmarkJudge
from editcaption.downstream.gedit import arrange_gedit_results, gedit_items, gedit_statistics, prepare_gedit_edits, score_gedit
from editcaption.downstream.imgedit import (
    IMGEDIT_TYPES,
    arrange_imgedit_results,
    imgedit_items,
    imgedit_overall,
    prepare_imgedit_edits,
    score_imgedit,
)
from editcaption.downstream.step1x import ClusterRequirementError, run_finetuning, run_inference, step1x_requirements
from editcaption.records import LONG_COLUMNS

BENCHMARKS = {"imgedit": "ImgEdit", "en": "GEdit-EN", "cn": "GEdit-CN"}  # table-5 column names


# -------------------------------------------------------------------------------------------- table 5

def table5_rows(model: str, *, gedit: Mapping[str, pd.DataFrame] | None = None,
                imgedit: Mapping[str, float] | None = None, judge: str = "openai:gpt-4.1",
                data: str = "") -> pd.DataFrame:
    """Table-5 cells in the long format (records.LONG_COLUMNS): "overall" per benchmark (ImgEdit:
    mean over edit types; GEdit-EN/CN: average G_O), plus G_SC / G_PQ and the ImgEdit per-type scores."""

    rows = []

    def cell(benchmark: str, metric: str, value: float) -> None:
        rows.append({"table": "table5", "model": model, "benchmark": benchmark, "metric": metric, "value": float(value),
                     "low": math.nan, "high": math.nan, "judge": judge, "data": data})

    if imgedit is not None:
        cell(BENCHMARKS["imgedit"], "overall", imgedit_overall(imgedit))
        for kind in IMGEDIT_TYPES:
            cell(BENCHMARKS["imgedit"], kind, imgedit.get(kind, math.nan))
    for lang, stats in (gedit or {}).items():
        average = stats.loc["average"]
        cell(BENCHMARKS[lang], "overall", average["G_O"])
        cell(BENCHMARKS[lang], "G_SC", average["G_SC"])
        cell(BENCHMARKS[lang], "G_PQ", average["G_PQ"])
    return pd.DataFrame(rows, columns=list(LONG_COLUMNS))


# --------------------------------------------------------------------------------------- the whole path

def load_gedit(path: str | Path) -> list[dict]:
    """A local copy of stepfun-ai/GEdit-Bench: a `save_to_disk` folder or a snapshot of the hub repository."""
    import datasets

    path = Path(path)
    if (path / "state.json").exists() or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))
        loaded = loaded["train"] if isinstance(loaded, datasets.DatasetDict) else loaded
    else:
        loaded = datasets.load_dataset(str(path), split="train")
    for column in ("input_image", "input_image_raw"):  # bytes are written as they are; no decoding needed
        if column in loaded.column_names:
            loaded = loaded.cast_column(column, datasets.Image(decode=False))
    return gedit_items(loaded)


def cluster_requirements(*, step1x_checkout, step1x_model_dir, gedit_data, imgedit_checkout, imgedit_images,
                         api_key_env: str = "OPENAI_API_KEY", python: str = sys.executable) -> list[str]:
    """Everything the table-5 cluster path lacks here, in words ([] when it can run)."""
    missing = step1x_requirements(step1x_checkout, step1x_model_dir, python=python)
    if not gedit_data or not Path(gedit_data).exists():
        missing.append(f"a local copy of the GEdit-Bench data (gedit_data={gedit_data!r}; "
                       "huggingface.co/datasets/stepfun-ai/GEdit-Bench)")
    basic = Path(imgedit_checkout or "") / "Benchmark" / "Basic"
    if not imgedit_checkout or not (basic / "basic_edit.json").exists() or not (basic / "prompts.json").exists():
        missing.append(f"an ImgEdit checkout with Benchmark/Basic/basic_edit.json and prompts.json "
                       f"(imgedit_checkout={imgedit_checkout!r}; git clone https://github.com/PKU-YuanGroup/ImgEdit)")
    if not imgedit_images or not Path(imgedit_images).is_dir():
        missing.append(f"the ImgEdit-Bench Basic images (imgedit_images={imgedit_images!r}; Benchmark.tar of "
                       "huggingface.co/datasets/sysuyy/ImgEdit, extracted)")
    if not os.environ.get(api_key_env):
        missing.append(f"the judge's API key in the environment variable {api_key_env} (GPT-4.1 judges table 5)")
    return missing


def run_table5(exports: Mapping[str, str | Path], out_dir: str | Path, *, step1x_checkout, step1x_model_dir,
               gedit_data, imgedit_checkout, imgedit_images, judge_model: str = "gpt-4.1",
               judge_base_url: str = "https://api.openai.com/v1", api_key_env: str = "OPENAI_API_KEY",
               finetune_overrides: Mapping[str, Any] | None = None, launch_overrides: Mapping[str, Any] | None = None,
               size_level: int = 1024, seed: int = 42, python: str = sys.executable) -> pd.DataFrame:
    """Table 5 on a cluster: per captioner (name -> Step1X-Edit export) fine-tune a LoRA, edit GEdit-Bench
    (EN, CN) and ImgEdit-Bench Basic with it, judge, and return the long-format rows. Every requirement is
    checked first: ClusterRequirementError lists all that is missing before any work starts."""
    missing = cluster_requirements(step1x_checkout=step1x_checkout, step1x_model_dir=step1x_model_dir,
                                   gedit_data=gedit_data, imgedit_checkout=imgedit_checkout,
                                   imgedit_images=imgedit_images, api_key_env=api_key_env, python=python)
    if missing:
        raise ClusterRequirementError("The Step1X-Edit table-5 path", missing)
    out = Path(out_dir)
    gedit = load_gedit(gedit_data)
    basic_edit = Path(imgedit_checkout) / "Benchmark" / "Basic" / "basic_edit.json"
    judge = BenchmarkJudge(judge_model, judge_base_url, api_key_env=api_key_env)
    gedit_jobs = prepare_gedit_edits(gedit, out / "inputs" / "gedit")
    imgedit_job = prepare_imgedit_edits(basic_edit, imgedit_images, out / "inputs" / "imgedit")
    frames = []
    for name, export_dir in exports.items():
        lora = run_finetuning(export_dir, checkout=step1x_checkout, model_dir=step1x_model_dir,
                              output_dir=out / "lora" / name, output_name=name, overrides=finetune_overrides,
                              launch_overrides=launch_overrides, python=python)["lora"]
        edited = {lang: run_inference(checkout=step1x_checkout, model_dir=step1x_model_dir, python=python, lora=lora,
                                      output_dir=out / "edits" / name / f"gedit-{lang}", size_level=size_level,
                                      seed=seed, **job)
                  for lang, job in gedit_jobs.items()}
        arrange_gedit_results(gedit, edited, out / "gedit", name)
        scored = score_gedit(gedit, out / "gedit", name, judge=judge, checkout=step1x_checkout,
                             cache_path=out / "judge_cache" / f"gedit-{name}.jsonl")
        gedit_stats = {lang: gedit_statistics(scored["results_dir"], name, lang) for lang in gedit_jobs}
        imgedit_edits = run_inference(checkout=step1x_checkout, model_dir=step1x_model_dir, python=python, lora=lora,
                                      output_dir=out / "edits" / name / "imgedit", size_level=size_level, seed=seed,
                                      **imgedit_job)
        arrange_imgedit_results(basic_edit, imgedit_edits, out / "imgedit" / name)
        imgedit = score_imgedit(basic_edit, imgedit_images, out / "imgedit" / name, judge=judge,
                                imgedit_checkout=imgedit_checkout, cache_path=out / "judge_cache" / f"imgedit-{name}.jsonl")
        frames.append(table5_rows(name, gedit=gedit_stats, imgedit=imgedit["typescore"], judge=f"openai:{judge_model}",
                                  data=f"GEdit-Bench n={len(gedit)}, ImgEdit Basic n={len(imgedit_items(basic_edit))}"))
    return pd.concat(frames, ignore_index=True)
