"""The cluster path of paper §5.3 / table 5: fine-tune Step1X-Edit on each triplet export, edit the benchmark
images with it, and judge them as GEdit-Bench and ImgEdit-Bench do.

Nothing here is vendored; the code follows these sources (read at the commits named):

- stepfun-ai/Step1X-Edit @570eba6: `scripts/finetuning.sh` (the `accelerate launch ... finetuning.py`
  command and its settings, kept in params/step1x/finetuning.yaml), `finetuning.py:setup_parser` and the
  `library/` argument helpers it calls (the accepted options, params/step1x/finetuning_options.txt),
  `library/accelerate_config.yaml`, `inference.py` (`--model_path` holds `step1x-edit-i1258.safetensors`,
  `vae.safetensors`, `Qwen2.5-VL-7B-Instruct/`; `--json_path` maps image names to instructions; the output
  folder gets `-<size_level>` appended, after `-offload` / `-quantized`; `--lora` loads the fine-tuned LoRA);
- GEdit-Bench, evaluated by Step1X-Edit's `GEdit-Bench/`: `EVAL.md`, `generate_image_example.py` and
  `test_gedit_score.py` (layout `<save_path>/<model>/fullset/<task_type>/<en|cn>/<key>.png` plus
  `<key>_SRCIMG.png`; per-group CSVs `<model>_<group>_gpt_score.csv` under
  `<save_path>/<model>/<backbone>/eval_results_new/` with its columns, "sementics_score" spelling included),
  `viescore/__init__.py` (the "tie" task: the SC prompt sees source + edited image, the PQ prompt the edited
  image only; SC = min of its scores, PQ = min of its scores, O = sqrt(SC * PQ)), `viescore/utils.py`
  (reply parsing), `viescore/mllm_tools/openai.py` (text first, then JPEG images; max_tokens 1400) and
  `calculate_statistics.py` (per group the mean of SC, PQ and of sqrt(SC * PQ) per item; the average is
  the unweighted mean over the 11 groups). The prompt texts are read from the local checkout's
  `GEdit-Bench/viescore/vie_prompts.py`, not copied here.
- PKU-YuanGroup/ImgEdit @547185d: `Benchmark/Basic/basic_bench.py` (`<result_img_folder>/<key>.png`, the
  original at `<origin_img_root>/<id>`, the prompt of `prompts.json[edit_type]` with `<edit_prompt>`
  replaced, then the original and the edited image; replies saved as `result.json` in the result folder;
  its argument is `--edit_json`, not the README's `--basic_edit`), `step1_get_avgscore.py` (per image the
  mean of the "Name: <digit>" lines, rounded to 2) and `step2_typescore.py` (per edit type the mean,
  rounded to 2); the overall ImgEdit score is the mean over the edit types.

The judge calls go through `generation.OpenAIBackend` (retries, backoff, resumable JSONL cache; the key only
from an environment variable). Where a reply cannot be parsed the official scripts guess a random score;
here the item is left out and counted in the result's `failures`.
"""
from __future__ import annotations

import ast
import base64
import csv
import io
import json
import logging
import math
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd
from PIL import Image

from editcaption import paths
from editcaption.downstream.export import STEP1X_CONFIG, image_file_bytes, read_step1x
from editcaption.generation import OpenAIBackend, Pair
from editcaption.records import LONG_COLUMNS, RecordError

log = logging.getLogger(__name__)

CHECKOUT_FILES = ("finetuning.py", "scripts/finetuning.sh", "library/lora_module.py", "library/accelerate_config.yaml",
                  "inference.py")
WEIGHTS = {"pretrained_model_name_or_path": "step1x-edit-i1258.safetensors", "ae": "vae.safetensors",
           "qwen2p5vl": "Qwen2.5-VL-7B-Instruct"}  # the files inference.py expects in --model_path
# third-party modules finetuning.py and library/ import (bitsandbytes: --optimizer_type adamw8bit), and inference.py
TRAIN_MODULES = ("torch", "torchvision", "accelerate", "diffusers", "transformers", "huggingface_hub", "safetensors",
                 "einops", "voluptuous", "toml", "imagesize", "cv2", "qwen_vl_utils", "bitsandbytes")
INFERENCE_MODULES = ("torch", "torchvision", "transformers", "safetensors", "einops", "qwen_vl_utils")
CLONE_HINT = "git clone https://github.com/stepfun-ai/Step1X-Edit"
WEIGHTS_HINT = ("huggingface.co/stepfun-ai/Step1X-Edit (step1x-edit-i1258.safetensors, vae.safetensors) and "
                "Qwen/Qwen2.5-VL-7B-Instruct in the same folder")

GEDIT_GROUPS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
                "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")
GEDIT_LANGUAGES = ("en", "cn")
GEDIT_FIELDS = ("task_type", "key", "instruction", "instruction_language", "input_image", "Intersection_exist")
GEDIT_CSV_FIELDS = ("source_image", "edited_image", "instruction", "sementics_score", "quality_score",
                    "intersection_exist", "instruction_language")
GEDIT_PROMPT_PARTS = {"SC": ("_context_no_delimit", "_prompts_0shot_two_image_edit_rule", "_prompts_0shot_tie_rule_SC"),
                      "PQ": ("_context_no_delimit", "_prompts_0shot_rule_PQ")}
VIESCORE_DELIMITER = "||V^=^V||"
IMGEDIT_TYPES = ("add", "adjust", "extract", "replace", "remove", "background", "style", "compose", "action")
IMGEDIT_FIELDS = ("id", "prompt", "edit_type")
BENCHMARKS = {"imgedit": "ImgEdit", "en": "GEdit-EN", "cn": "GEdit-CN"}  # table-5 column names


class ClusterRequirementError(RuntimeError):
    """What the cluster path needs and this machine lacks; `missing` lists each item in words."""

    def __init__(self, task: str, missing: Sequence[str]):
        self.task, self.missing = task, list(missing)
        super().__init__(f"{task} needs what this machine lacks:\n" + "\n".join(f"  - {m}" for m in self.missing))


# ---------------------------------------------------------------------------------------- requirements

def _cuda_devices() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _missing_modules(python: str, modules: Sequence[str]) -> list[str]:
    """The modules `python` cannot find (checked in that interpreter, which runs the training)."""
    code = ("import importlib.util, json, sys; "
            "print(json.dumps([m for m in sys.argv[1:] if importlib.util.find_spec(m) is None]))")
    try:
        out = subprocess.run([python, "-c", code, *modules], capture_output=True, text=True, timeout=120, check=True)
        return json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError) as err:
        return [f"(could not run {python}: {err})"]


def step1x_requirements(checkout: str | Path | None, model_dir: str | Path | None, *, gpu: bool = True,
                        python: str = sys.executable, modules: Sequence[str] = TRAIN_MODULES) -> list[str]:
    """Everything the Step1X-Edit path lacks here, in words ([] when all is in place)."""
    missing = []
    root = Path(checkout) if checkout else None
    if root is None or not root.is_dir():
        missing.append(f"a local Step1X-Edit checkout (step1x_checkout={checkout!r}; {CLONE_HINT})")
    else:
        absent = [f for f in CHECKOUT_FILES if not (root / f).exists()]
        if absent:
            missing.append(f"a complete Step1X-Edit checkout at {root} (missing {', '.join(absent)}; {CLONE_HINT})")
    weights = Path(model_dir) if model_dir else None
    if weights is None or not weights.is_dir():
        missing.append(f"the Step1X-Edit weights folder (step1x_model_dir={model_dir!r}: {WEIGHTS_HINT})")
    else:
        absent = [name for name in WEIGHTS.values() if not (weights / name).exists()]
        if absent:
            missing.append(f"the weights {', '.join(absent)} in {weights} ({WEIGHTS_HINT})")
    if gpu and _cuda_devices() == 0:
        missing.append("a CUDA GPU visible to torch (finetuning.sh trains in bf16 with an fp8 base and 8-bit AdamW; "
                       "the README quotes a 24 GB GPU for LoRA at 1024 px; the paper used 64 H800 GPUs for 3 days)")
    absent = _missing_modules(python, modules) if modules else []
    if absent:
        missing.append(f"Step1X-Edit's training packages in {python} (missing {', '.join(absent)}; "
                       "pip install -r requirements.txt in the checkout)")
    return missing


def require_step1x(checkout, model_dir, *, task: str = "Step1X-Edit fine-tuning", **kwargs) -> None:
    """Raise ClusterRequirementError listing everything missing (see `step1x_requirements`)."""
    missing = step1x_requirements(checkout, model_dir, **kwargs)
    if missing:
        raise ClusterRequirementError(task, missing)


# ------------------------------------------------------------------------------------------ fine-tuning

def accepted_options(checkout: str | Path | None = None) -> dict[str, str]:
    """Options finetuning.py accepts -> "flag", "value" or "list": read from a checkout's source (every
    add_argument under finetuning.py and library/), else from params/step1x/finetuning_options.txt."""
    if checkout is None:
        lines = (paths.params_dir() / "step1x" / "finetuning_options.txt").read_text(encoding="utf-8").splitlines()
        return dict(line.split() for line in lines if line.startswith("--"))
    root = Path(checkout)
    options = {}
    for path in [root / "finetuning.py", *sorted((root / "library").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "add_argument":
                keywords = {k.arg: getattr(k.value, "value", None) for k in node.keywords}
                kind = ("flag" if keywords.get("action") in ("store_true", "store_false")
                        else "list" if keywords.get("nargs") in ("*", "+") else "value")
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and arg.value.startswith("--"):
                        options[arg.value] = kind
    return options


def finetuning_settings() -> dict:
    """params/step1x/finetuning.yaml: {"launch": {...}, "args": {...}}."""
    import yaml

    return yaml.safe_load((paths.params_dir() / "step1x" / "finetuning.yaml").read_text(encoding="utf-8"))


def _cli(options: Mapping[str, Any], kinds: Mapping[str, str] | None, where: str) -> list[str]:
    """--key value pairs; True -> a bare flag; False/None -> left out; each key checked against `kinds`."""
    argv = []
    for key, value in options.items():
        flag = f"--{key}"
        kind = kinds.get(flag) if kinds is not None else None
        if kinds is not None and kind is None:
            raise ValueError(f"{where} does not accept {flag}")
        if value is None or value is False:
            continue
        if value is True:
            if kind not in (None, "flag"):
                raise ValueError(f"{flag} of {where} takes a value, got true")
            argv.append(flag)
            continue
        if kind == "flag":
            raise ValueError(f"{flag} of {where} is a flag: set it to true or false, got {value!r}")
        values = value if isinstance(value, (list, tuple)) else [value]
        if len(values) > 1 and kind not in (None, "list"):
            raise ValueError(f"{flag} of {where} takes one value, got {values!r}")
        argv += [flag, *(str(v) for v in values)]
    return argv


def finetune_command(export_dir: str | Path, *, checkout: str | Path | None, model_dir: str | Path,
                     output_dir: str | Path, output_name: str, overrides: Mapping[str, Any] | None = None,
                     launch_overrides: Mapping[str, Any] | None = None, python: str = sys.executable) -> list[str]:
    """The `accelerate launch ... finetuning.py ...` command of scripts/finetuning.sh for one export
    (run it in the checkout). Every finetuning.py option is checked against what its parser accepts."""

    settings = finetuning_settings()
    weights = Path(model_dir).resolve()
    args = {key: str(weights / name) for key, name in WEIGHTS.items()}
    args.update(settings["args"])
    args.update(overrides or {})
    args.update(dataset_config=str((Path(export_dir) / STEP1X_CONFIG).resolve()),
                output_dir=str(Path(output_dir).resolve()), output_name=output_name)
    kinds = accepted_options(checkout if checkout and (Path(checkout) / "library").is_dir() else None)
    launch = {**settings["launch"], **(launch_overrides or {})}
    return [python, "-m", "accelerate.commands.launch", *_cli(launch, None, "accelerate launch"), "finetuning.py",
            *_cli(args, kinds, "finetuning.py")]


def _breakpoint_warning(checkout: Path, command: Sequence[str]) -> list[str]:
    """finetuning.py at 570eba6 stops in pdb inside encode_images_to_latents, which runs only without cached latents."""
    source = (checkout / "finetuning.py").read_text(encoding="utf-8")
    caching = "--cache_latents" in command or "--cache_latents_to_disk" in command
    if "pdb.set_trace()" in source and not caching:
        return ["latents cached (--cache_latents_to_disk): this checkout's finetuning.py stops at a pdb breakpoint "
                "in encode_images_to_latents otherwise"]
    return []


def run_finetuning(export_dir: str | Path, *, checkout: str | Path | None, model_dir: str | Path | None,
                   output_dir: str | Path, output_name: str, overrides: Mapping[str, Any] | None = None,
                   launch_overrides: Mapping[str, Any] | None = None, python: str = sys.executable,
                   dry_run: bool = False) -> dict:
    """Fine-tune a Step1X-Edit LoRA on one export with the checkout's own script.

    Returns {"command", "cwd", "lora", "log", "returncode"}; with dry_run the command is built (and checked)
    but not run. Raises ClusterRequirementError when the checkout, weights, GPU or packages are missing."""

    read_step1x(export_dir)  # the export is complete before any GPU time is spent
    missing = step1x_requirements(checkout, model_dir, gpu=not dry_run, python=python,
                                  modules=() if dry_run else TRAIN_MODULES)
    if missing:
        raise ClusterRequirementError("Step1X-Edit fine-tuning", missing)
    command = finetune_command(export_dir, checkout=checkout, model_dir=model_dir, output_dir=output_dir,
                               output_name=output_name, overrides=overrides, launch_overrides=launch_overrides,
                               python=python)
    blocked = _breakpoint_warning(Path(checkout), command)
    if blocked:
        raise ClusterRequirementError("Step1X-Edit fine-tuning", blocked)
    out = Path(output_dir).resolve()
    result = {"command": command, "cwd": str(Path(checkout).resolve()), "lora": str(out / f"{output_name}.safetensors"),
              "log": str(out / f"{output_name}.log"), "returncode": None}
    if dry_run:
        return result
    out.mkdir(parents=True, exist_ok=True)
    with open(result["log"], "w", encoding="utf-8") as log_file:
        result["returncode"] = subprocess.run(command, cwd=result["cwd"], stdout=log_file, stderr=subprocess.STDOUT).returncode
    if result["returncode"] != 0:
        raise RuntimeError(f"finetuning.py exited with {result['returncode']}; see {result['log']}")
    return result


# -------------------------------------------------------------------------------------------- inference

def inference_output_dir(output_dir: str | Path, *, size_level: int = 1024, offload: bool = False,
                         quantized: bool = False) -> Path:
    """Where inference.py really writes: it appends -offload, -quantized and -<size_level> to --output_dir."""
    name = str(output_dir).rstrip("/") + ("-offload" if offload else "") + ("-quantized" if quantized else "")
    return Path(f"{name}-{size_level}")


def inference_command(*, model_dir: str | Path, input_dir: str | Path, json_path: str | Path, output_dir: str | Path,
                      lora: str | Path | None = None, seed: int = 42, num_steps: int = 28, cfg_guidance: float = 6.0,
                      size_level: int = 1024, offload: bool = False, quantized: bool = False,
                      python: str = sys.executable) -> list[str]:
    """Step1X-Edit's inference.py over one folder of inputs (run it in the checkout)."""
    command = [python, "inference.py", "--model_path", str(Path(model_dir).resolve()),
               "--input_dir", str(Path(input_dir).resolve()), "--output_dir", str(Path(output_dir).resolve()),
               "--json_path", str(Path(json_path).resolve()), "--seed", str(seed), "--num_steps", str(num_steps),
               "--cfg_guidance", str(cfg_guidance), "--size_level", str(size_level)]
    command += ["--offload"] * offload + ["--quantized"] * quantized
    return command + (["--lora", str(Path(lora).resolve())] if lora else [])


def run_inference(*, checkout: str | Path | None, model_dir: str | Path | None, python: str = sys.executable,
                  **kwargs) -> Path:
    """Run inference.py in the checkout; return the folder it wrote (see `inference_output_dir`)."""
    require_step1x(checkout, model_dir, task="Step1X-Edit inference", python=python,
                   modules=INFERENCE_MODULES)
    command = inference_command(model_dir=model_dir, python=python, **kwargs)
    subprocess.run(command, cwd=str(Path(checkout).resolve()), check=True)
    return inference_output_dir(kwargs["output_dir"], size_level=kwargs.get("size_level", 1024),
                                offload=kwargs.get("offload", False), quantized=kwargs.get("quantized", False))


# ------------------------------------------------------------------------------------------------ images

def _png_bytes(value: Any, *, row: Any, field: str) -> bytes:
    """The image as PNG bytes (PNG input is kept as is)."""

    data, ext = image_file_bytes(value, row=row, field=field)
    if ext == ".png":
        return data
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def _load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


# --------------------------------------------------------------------------------------------- GEdit-Bench

def gedit_items(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """GEdit-Bench rows (the `train` split of stepfun-ai/GEdit-Bench, loaded by the caller) checked."""
    items, seen = [], set()
    for index, row in enumerate(rows):
        for field in GEDIT_FIELDS:
            if field not in row:
                raise RecordError("missing field", row=index, field=field)
        if row["task_type"] not in GEDIT_GROUPS:
            raise RecordError(f"task_type {row['task_type']!r} not in {GEDIT_GROUPS}", row=index, field="task_type")
        if row["instruction_language"] not in GEDIT_LANGUAGES:
            raise RecordError(f"instruction_language {row['instruction_language']!r} not in {GEDIT_LANGUAGES}",
                              row=index, field="instruction_language")
        if not isinstance(row["key"], str) or not re.fullmatch(r"[A-Za-z0-9._-]+", row["key"]):
            raise RecordError(f"key {row['key']!r} is not a plain file name", row=index, field="key")
        ident = (row["instruction_language"], row["key"])
        if ident in seen:
            raise RecordError("duplicate key for this language", row=index, field="key")
        seen.add(ident)
        items.append(dict(row))
    return items


def prepare_gedit_edits(rows, out_dir: str | Path) -> dict[str, dict[str, Path]]:
    """Inputs for inference.py, per language: `<out_dir>/<lang>/images/<key>.png` (the benchmark's
    input_image) and `<out_dir>/<lang>/prompts.json` ({"<key>.png": instruction})."""
    items = gedit_items(rows)
    jobs = {}
    for lang in GEDIT_LANGUAGES:
        chosen = [item for item in items if item["instruction_language"] == lang]
        if not chosen:
            continue
        images = Path(out_dir) / lang / "images"
        images.mkdir(parents=True, exist_ok=True)
        prompts = {}
        for item in chosen:
            (images / f"{item['key']}.png").write_bytes(_png_bytes(item["input_image"], row=item["key"], field="input_image"))
            prompts[f"{item['key']}.png"] = item["instruction"]
        json_path = Path(out_dir) / lang / "prompts.json"
        json_path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        jobs[lang] = {"input_dir": images, "json_path": json_path}
    return jobs


def gedit_image_paths(save_path: str | Path, model_name: str, item: Mapping[str, Any]) -> tuple[Path, Path]:
    """(source, edited) paths where test_gedit_score.py looks for one item."""
    folder = Path(save_path) / model_name / "fullset" / item["task_type"] / item["instruction_language"]
    return folder / f"{item['key']}_SRCIMG.png", folder / f"{item['key']}.png"


def arrange_gedit_results(rows, edited_dirs: Mapping[str, str | Path], save_path: str | Path, model_name: str) -> dict:
    """Put edited images (`<edited_dirs[lang]>/<key>.png`) and sources in GEdit-Bench's evaluation layout.

    Returns {"written": n, "missing": [(lang, key), ...]}: a missing edit is reported, not invented."""
    written, missing = 0, []
    for item in gedit_items(rows):
        lang = item["instruction_language"]
        edited = Path(edited_dirs[lang]) / f"{item['key']}.png" if lang in edited_dirs else None
        if edited is None or not edited.exists():
            missing.append((lang, item["key"]))
            continue
        source_path, edited_path = gedit_image_paths(save_path, model_name, item)
        edited_path.parent.mkdir(parents=True, exist_ok=True)
        source_path.write_bytes(_png_bytes(item["input_image"], row=item["key"], field="input_image"))
        edited_path.write_bytes(_png_bytes(str(edited), row=item["key"], field="edited_image"))
        written += 1
    if missing:
        log.warning("GEdit-Bench: %d item(s) have no edited image (first: %s)", len(missing), missing[0])
    return {"written": written, "missing": missing}


def gedit_prompts(checkout: str | Path) -> dict[str, str]:
    """The VIEScore "tie" prompts {"SC": ..., "PQ": ...} built as viescore/__init__.py builds them, from the
    checkout's GEdit-Bench/viescore/vie_prompts.py (read, not imported)."""
    path = Path(checkout) / "GEdit-Bench" / "viescore" / "vie_prompts.py"
    if not path.exists():
        raise ClusterRequirementError("GEdit-Bench judging", [f"GEdit-Bench/viescore/vie_prompts.py in a Step1X-Edit "
                                                             f"checkout (step1x_checkout={str(checkout)!r}; {CLONE_HINT})"])
    texts = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    texts[target.id] = node.value.value
    prompts = {}
    for kind, parts in GEDIT_PROMPT_PARTS.items():
        absent = [p for p in parts if p not in texts]
        if absent:
            raise RecordError(f"no {absent} in the VIEScore prompts", file=path, field=absent[0])
        prompts[kind] = "\n".join(texts[p] for p in parts)
    if "<instruction>" not in prompts["SC"]:
        raise RecordError("the SC prompt has no <instruction> placeholder", file=path, field="_prompts_0shot_tie_rule_SC")
    return prompts


def parse_viescore(reply: str) -> list[int] | None:
    """The score list of a VIEScore reply ({"score": [...], "reasoning": ...}, between ||V^=^V|| delimiters,
    bare in the text, or a bare list / number); None when there is none (no guessing)."""
    text = reply or ""
    if text.count(VIESCORE_DELIMITER) == 2:
        text = text.split(VIESCORE_DELIMITER)[1]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            scores = json.loads(text[start:end + 1].replace("\n", "")).get("score")
        except (ValueError, AttributeError):
            found = re.search(r"['\"]?score['\"]?\s*:\s*(\[[^\]]*\]|-?\d+)", text)
            scores = json.loads(found.group(1)) if found else None
    else:
        found = re.fullmatch(r"\s*(\[\s*\d+\s*(?:,\s*\d+\s*)*\]|\d+)\s*", text)
        scores = json.loads(found.group(1)) if found else None
    scores = scores if isinstance(scores, list) else [scores] if isinstance(scores, int) else None
    if not scores or not all(isinstance(s, (int, float)) and 0 <= s <= 10 for s in scores):
        return None
    return [int(s) if float(s).is_integer() else s for s in scores]


def _jpeg_url(image: Image.Image) -> str:
    """As viescore's encode_pil_image: RGB, JPEG (PIL's default quality), base64."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _file_url(path: str | Path) -> str:
    """As ImgEdit's basic_bench.py: the file's bytes, base64, labelled image/png."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


class BenchmarkJudge(OpenAIBackend):
    """OpenAIBackend sending, per request, one text and then its images (data URLs), as the benchmarks'
    scorers do. Retries, backoff, the key from the environment and the JSONL cache are OpenAIBackend's."""

    name = "openai-benchmark"

    def __init__(self, model: str = "gpt-4.1", base_url: str = "https://api.openai.com/v1", *,
                 api_key_env: str = "OPENAI_API_KEY", max_new_tokens: int = 1400, temperature: float | None = 0.0,
                 **kwargs):
        super().__init__(model, base_url, api_key_env=api_key_env, max_new_tokens=max_new_tokens,
                         temperature=temperature, **kwargs)
        self._payloads: dict[str, tuple[str, list[str]]] = {}

    def request_body(self, pair: Pair, prompt: str) -> dict:
        text, urls = self._payloads[pair.id]
        content = [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": u}} for u in urls)]
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": self.max_new_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        return {**body, **self.extra_body}

    def ask(self, requests: Sequence[dict], template: str, *, cache_path: str | Path | None = None,
            progress: bool = False) -> dict[str, str]:
        """{id: reply text} for requests [{"id", "text", "images": [data URL, ...]}] ("" where the call failed;
        the reason is in `last_results`). `template` names the prompt version in the cache."""
        self._payloads = {r["id"]: (r["text"], list(r["images"])) for r in requests}
        # the caption machinery wants images per row; the real ones travel in the payload
        rows = [{"id": r["id"], "source_image": _PLACEHOLDER, "target_image": _PLACEHOLDER} for r in requests]
        return {c.id: c.instruction for c in self.caption(rows, template, cache_path=cache_path, progress=progress)}


_PLACEHOLDER = Image.new("RGB", (1, 1))


def score_gedit(rows, save_path: str | Path, model_name: str, *, judge: BenchmarkJudge, checkout: str | Path,
                backbone: str = "gpt4o", cache_path: str | Path | None = None, progress: bool = False) -> dict:
    """Judge every arranged GEdit-Bench item (SC and PQ calls) and write test_gedit_score.py's CSVs.

    Returns {"results_dir", "scored", "skipped_missing_images", "failures": {item: reason}}."""
    prompts = gedit_prompts(checkout)
    requests, meta = [], {}
    skipped = 0
    for item in gedit_items(rows):
        source_path, edited_path = gedit_image_paths(save_path, model_name, item)
        if not (source_path.exists() and edited_path.exists()):
            skipped += 1
            continue
        source = _load_rgb(source_path)
        edited = _load_rgb(edited_path).resize(source.size)
        base = f"{item['instruction_language']}/{item['task_type']}/{item['key']}"
        requests.append({"id": f"{base}/SC", "text": prompts["SC"].replace("<instruction>", item["instruction"]),
                         "images": [_jpeg_url(source), _jpeg_url(edited)]})
        requests.append({"id": f"{base}/PQ", "text": prompts["PQ"], "images": [_jpeg_url(edited)]})
        meta[base] = (item, source_path, edited_path)
    replies = judge.ask(requests, prompts["SC"] + prompts["PQ"], cache_path=cache_path, progress=progress)
    out_dir = Path(save_path) / model_name / backbone / "eval_results_new"
    out_dir.mkdir(parents=True, exist_ok=True)
    by_group: dict[str, list[dict]] = {group: [] for group in GEDIT_GROUPS}
    failures = {}
    for base, (item, source_path, edited_path) in meta.items():
        sc, pq = parse_viescore(replies[f"{base}/SC"]), parse_viescore(replies[f"{base}/PQ"])
        if sc is None or pq is None:
            failures[base] = "no score in the " + " and ".join(k for k, v in (("SC", sc), ("PQ", pq)) if v is None) + " reply"
            continue
        by_group[item["task_type"]].append({
            "source_image": str(source_path), "edited_image": str(edited_path), "instruction": item["instruction"],
            "sementics_score": min(sc), "quality_score": min(pq), "intersection_exist": bool(item["Intersection_exist"]),
            "instruction_language": item["instruction_language"]})
    combined = []
    for group, group_rows in by_group.items():
        _write_csv(out_dir / f"{model_name}_{group}_gpt_score.csv", group_rows)
        combined += group_rows
    _write_csv(out_dir / f"{model_name}_combined_gpt_score.csv", combined)
    if failures:
        log.warning("GEdit-Bench: %d item(s) without a parsable score (first: %s)", len(failures), next(iter(failures)))
    return {"results_dir": out_dir, "scored": len(combined), "skipped_missing_images": skipped, "failures": failures}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GEDIT_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def gedit_statistics(results_dir: str | Path, model_name: str, language: str, *,
                     intersection_only: bool = False) -> pd.DataFrame:
    """calculate_statistics.py's numbers: per group n, G_SC, G_PQ, G_O (mean of sqrt(SC*PQ) per item), and
    an "average" row (unweighted mean over the 11 groups; NaN when a group has no item)."""
    if language not in GEDIT_LANGUAGES:
        raise ValueError(f"language must be one of {GEDIT_LANGUAGES}, got {language!r}")
    records = []
    for group in GEDIT_GROUPS:
        path = Path(results_dir) / f"{model_name}_{group}_gpt_score.csv"
        if not path.exists():
            raise RecordError("no score CSV for this group", file=path)
        frame = pd.read_csv(path)
        missing = [c for c in GEDIT_CSV_FIELDS if c not in frame.columns]
        if missing:
            raise RecordError("missing column", file=path, field=missing[0])
        frame = frame[frame["instruction_language"] == language]
        if intersection_only:
            frame = frame[frame["intersection_exist"].astype(str).str.lower() == "true"]
        sc, pq = frame["sementics_score"].astype(float), frame["quality_score"].astype(float)
        records.append({"group": group, "n": len(frame), "G_SC": sc.mean(), "G_PQ": pq.mean(),
                        "G_O": (sc * pq).map(math.sqrt).mean()})
    table = pd.DataFrame(records).set_index("group")
    average = {metric: table[metric].mean(skipna=False) for metric in ("G_SC", "G_PQ", "G_O")}
    table.loc["average"] = {"n": int(table["n"].sum()), **average}
    table["n"] = table["n"].astype(int)
    return table


# ------------------------------------------------------------------------------------------ ImgEdit-Bench

def imgedit_items(basic_edit: Mapping[str, Any] | str | Path) -> dict[str, dict]:
    """ImgEdit Basic's `basic_edit.json` ({key: {"id", "prompt", "edit_type"}}), checked."""
    source = None
    if isinstance(basic_edit, (str, Path)):
        source = Path(basic_edit)
        basic_edit = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(basic_edit, Mapping):
        raise RecordError("expected a JSON object {key: {id, prompt, edit_type}}", file=source)
    items = {}
    for key, entry in basic_edit.items():
        for field in IMGEDIT_FIELDS:
            if not isinstance(entry, Mapping) or not isinstance(entry.get(field), str) or not entry[field]:
                raise RecordError("missing or empty", file=source, row=key, field=field)
        if entry["edit_type"] not in IMGEDIT_TYPES:
            raise RecordError(f"edit_type {entry['edit_type']!r} not in {IMGEDIT_TYPES}", file=source, row=key,
                              field="edit_type")
        items[str(key)] = dict(entry)
    return items


def prepare_imgedit_edits(basic_edit, origin_img_root: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Inputs for inference.py: `<out_dir>/images/<key>.png` (the original, as PNG) and `<out_dir>/prompts.json`
    ({"<key>.png": prompt}); its outputs are then named as basic_bench.py wants them."""
    items = imgedit_items(basic_edit)
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for key, entry in items.items():
        original = Path(origin_img_root) / entry["id"]
        (images / f"{key}.png").write_bytes(_png_bytes(str(original), row=key, field="id"))
        prompts[f"{key}.png"] = entry["prompt"]
    json_path = Path(out_dir) / "prompts.json"
    json_path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"input_dir": images, "json_path": json_path}


def arrange_imgedit_results(basic_edit, edited_dir: str | Path, result_img_folder: str | Path) -> dict:
    """Copy `<edited_dir>/<key>.png` to `<result_img_folder>/<key>.png`; missing edits are reported."""
    out = Path(result_img_folder)
    out.mkdir(parents=True, exist_ok=True)
    written, missing = 0, []
    for key in imgedit_items(basic_edit):
        edited = Path(edited_dir) / f"{key}.png"
        if not edited.exists():
            missing.append(key)
            continue
        (out / f"{key}.png").write_bytes(_png_bytes(str(edited), row=key, field="edited_image"))
        written += 1
    return {"written": written, "missing": missing}


def imgedit_prompts(imgedit_checkout: str | Path) -> dict[str, str]:
    """Benchmark/Basic/prompts.json of an ImgEdit checkout ({edit_type: prompt with <edit_prompt>})."""
    path = Path(imgedit_checkout) / "Benchmark" / "Basic" / "prompts.json"
    if not path.exists():
        raise ClusterRequirementError("ImgEdit-Bench judging", [
            f"Benchmark/Basic/prompts.json of an ImgEdit checkout (imgedit_checkout={str(imgedit_checkout)!r}; "
            "git clone https://github.com/PKU-YuanGroup/ImgEdit)"])
    prompts = json.loads(path.read_text(encoding="utf-8"))
    absent = [t for t in IMGEDIT_TYPES if t not in prompts]
    if absent:
        raise RecordError(f"no prompt for {absent}", file=path, field=absent[0])
    return prompts


def imgedit_bench_command(imgedit_checkout: str | Path, *, result_img_folder, edit_json, origin_img_root,
                          num_processes: int = 32, python: str = sys.executable) -> list[str]:
    """The official scorer's command line (Benchmark/Basic/basic_bench.py; it needs its key and URL edited in)."""
    root = Path(imgedit_checkout) / "Benchmark" / "Basic"
    return [python, str(root / "basic_bench.py"), "--result_img_folder", str(result_img_folder), "--edit_json",
            str(edit_json), "--origin_img_root", str(origin_img_root), "--num_processes", str(num_processes),
            "--prompts_json", str(root / "prompts.json")]


def score_imgedit(basic_edit, origin_img_root: str | Path, result_img_folder: str | Path, *, judge: BenchmarkJudge,
                  imgedit_checkout: str | Path, cache_path: str | Path | None = None, progress: bool = False) -> dict:
    """Judge every edited image as basic_bench.py does and write its `result.json`, then step 1 and 2's
    `average_score.json` and `typescore.json` beside it. Returns {"result_json", "average", "typescore",
    "scored", "missing", "failures"}."""
    items = imgedit_items(basic_edit)
    prompts = imgedit_prompts(imgedit_checkout)
    folder = Path(result_img_folder)
    requests, missing = [], []
    for key, entry in items.items():
        edited, original = folder / f"{key}.png", Path(origin_img_root) / entry["id"]
        if not (edited.exists() and original.exists()):
            missing.append(key)
            continue
        requests.append({"id": key, "text": prompts[entry["edit_type"]].replace("<edit_prompt>", entry["prompt"]),
                         "images": [_file_url(original), _file_url(edited)]})
    template = json.dumps(prompts, sort_keys=True)
    replies = judge.ask(requests, template, cache_path=cache_path, progress=progress)
    results = {key: text for key, text in replies.items() if text}
    failures = {key: "the judge call failed" for key, text in replies.items() if not text}
    (folder / "result.json").write_text(json.dumps(results, indent=4, ensure_ascii=False), encoding="utf-8")
    average = imgedit_average_scores(results)
    failures.update({key: "no 'Name: <digit>' score line in the reply" for key in results if key not in average})
    (folder / "average_score.json").write_text(json.dumps(average, indent=2), encoding="utf-8")
    typescore = imgedit_type_scores(average, items)
    (folder / "typescore.json").write_text(json.dumps(typescore, indent=2), encoding="utf-8")
    return {"result_json": folder / "result.json", "average": average, "typescore": typescore,
            "scored": len(average), "missing": missing, "failures": failures}


def imgedit_average_scores(results: Mapping[str, Any]) -> dict[str, float]:
    """step1_get_avgscore.py: per key the mean of the "<name>: <digits>" lines, rounded to 2 (keys
    without any are left out)."""
    averages = {}
    for key, text in results.items():
        if not isinstance(text, str):
            continue
        scores = []
        for line in text.splitlines():
            parts = line.strip().split(": ")
            if len(parts) == 2 and parts[1].isdigit():
                scores.append(int(parts[1]))
        if scores:
            averages[key] = round(sum(scores) / len(scores), 2)
    return averages


def imgedit_type_scores(averages: Mapping[str, float], basic_edit) -> dict[str, float]:
    """step2_typescore.py: per edit type the mean of the per-image averages, rounded to 2."""
    items = imgedit_items(basic_edit)
    by_type: dict[str, list[float]] = {}
    for key, score in averages.items():
        if key in items:
            by_type.setdefault(items[key]["edit_type"], []).append(score)
    return {kind: round(sum(scores) / len(scores), 2) for kind, scores in by_type.items() if scores}


def imgedit_overall(typescore: Mapping[str, float]) -> float:
    """The ImgEdit overall score: the mean over its edit types (NaN unless all nine are scored)."""
    if set(typescore) != set(IMGEDIT_TYPES):
        return math.nan
    return sum(typescore[t] for t in IMGEDIT_TYPES) / len(IMGEDIT_TYPES)


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
