"""What every notebook records first (versions, device, git SHA, run folder) and writes last (metrics.json)."""
from __future__ import annotations

import importlib.metadata
import json
import math
import platform
import random
import subprocess
from pathlib import Path
from typing import Any, Mapping, Sequence

from editcaption import paths

PACKAGES = ("editcaption", "torch", "torchvision", "transformers", "trl", "peft", "datasets", "accelerate",
            "deepspeed", "papermill")


def package_versions(names: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def device_summary() -> str:
    import torch

    if torch.cuda.is_available():
        return f"cuda x{torch.cuda.device_count()} ({torch.cuda.get_device_name(0)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def git_sha(root: Path | None = None) -> str:
    """The checkout's commit, with '+dirty' when it has uncommitted changes; 'unknown' outside git."""
    root = root or paths.repo_root()
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return sha + ("+dirty" if dirty else "")


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (CPU and every GPU), as `transformers.set_seed` does, without
    importing transformers: that import alone takes 5 s on 2 cores, in notebooks that never train."""
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # seeds every CUDA device too


def start_stage(stage: str, run_name: str, output_root: str = "outputs", seed: int | None = None) -> Path:
    """Create outputs/<run_name>/<stage>/, seed the RNGs, print and save the environment; return the folder."""
    out = paths.stage_dir(run_name, stage, output_root)
    if seed is not None:
        seed_everything(seed)
    info = {"stage": stage, "run_name": run_name, "output_dir": str(out), "python": platform.python_version(),
            "platform": platform.platform(), "device": device_summary(), "git_sha": git_sha(),
            "packages": package_versions(), "seed": seed}
    (out / "environment.json").write_text(json.dumps(info, indent=2) + "\n")
    width = max(len(k) for k in info)
    for key, value in info.items():
        if key != "packages":
            print(f"{key:<{width}}  {value}")
    print("packages".ljust(width), " ", ", ".join(f"{k} {v}" for k, v in info["packages"].items()))
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_metrics(stage_dir: str | Path, metrics: dict[str, Any]) -> Path:
    """Write the stage's metrics.json (read by tests and by the reporting notebook)."""
    path = Path(stage_dir) / "metrics.json"
    path.write_text(json.dumps(_jsonable(metrics), indent=2, sort_keys=True) + "\n")
    print(f"wrote {path}")
    return path


def show_markdown(text: str):
    """Render Markdown in a notebook (IPython's display); the text itself elsewhere."""
    try:
        from IPython.display import Markdown, display
    except ImportError:  # plain Python: print it
        print(text)
        return text
    display(Markdown(text))
    return text


def show_tables(files: Mapping[str, Mapping[str, Path]], order: Sequence[str] | None = None) -> None:
    """Render each table's Markdown file ({name: {"md": path, ...}}, in `order` when given)."""
    for name in order or list(files):
        show_markdown(Path(files[name]["md"]).read_text(encoding="utf-8"))


def show_figures(files: Mapping[str, Sequence[Path]]) -> None:
    """Each figure's name, then its first file (the PNG) shown inline (the path printed outside a notebook)."""
    try:
        from IPython.display import Image, display
    except ImportError:  # plain Python: the paths
        Image = display = None
    for name, figure_paths in files.items():
        print(name)
        if display is None:
            print(figure_paths[0])
        else:
            display(Image(filename=str(figure_paths[0])))
