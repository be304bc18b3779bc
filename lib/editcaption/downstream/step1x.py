"""Step1X-Edit on a GPU cluster (paper §5.3): what the path needs, the LoRA fine-tuning command on a triplet
export, and the inference command that edits benchmark images with the fine-tuned LoRA.

Nothing here is vendored; the code follows these sources (read at the commits named):

- stepfun-ai/Step1X-Edit @570eba6: `scripts/finetuning.sh` (the `accelerate launch ... finetuning.py`
  command and its settings, kept in params/step1x/finetuning.yaml), `finetuning.py:setup_parser` and the
  `library/` argument helpers it calls (the accepted options, params/step1x/finetuning_options.txt),
  `library/accelerate_config.yaml`, `inference.py` (`--model_path` holds `step1x-edit-i1258.safetensors`,
  `vae.safetensors`, `Qwen2.5-VL-7B-Instruct/`; `--json_path` maps image names to instructions; the output
  folder gets `-<size_level>` appended, after `-offload` / `-quantized`; `--lora` loads the fine-tuned LoRA);
"""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

from editcaption import paths
from editcaption.downstream.export import STEP1X_CONFIG, read_step1x

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
