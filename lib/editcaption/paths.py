"""Where the repository, its notebooks, profiles and run folders are."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

ROOT_ENV = "EDITCAPTION_ROOT"  # set to point at a checkout when running from elsewhere


def repo_root() -> Path:
    """The checkout holding notebooks/ and params/: $EDITCAPTION_ROOT, else the first parent of the
    working directory (or of this package, for an editable install) that has both."""
    if os.environ.get(ROOT_ENV):
        root = Path(os.environ[ROOT_ENV]).resolve()
        if not (root / "params").is_dir():
            raise FileNotFoundError(f"${ROOT_ENV}={root} has no params/ folder")
        return root
    for start in (Path.cwd(), Path(__file__).resolve().parent):
        for candidate in (start, *start.parents):
            if (candidate / "params").is_dir() and (candidate / "notebooks").is_dir():
                return candidate
    raise FileNotFoundError(
        "cannot find the EditCaption checkout (a folder with params/ and notebooks/); "
        f"run from inside it or set ${ROOT_ENV}"
    )


def notebooks_dir() -> Path:
    return repo_root() / "notebooks"


def params_dir() -> Path:
    return repo_root() / "params"


def stage_dir(run_name: str, stage: str, output_root: str | Path = "outputs") -> Path:
    """outputs/<run_name>/<stage>/ (relative output roots are taken from the repo root), created."""
    root = Path(output_root)
    if not root.is_absolute():
        root = repo_root() / root
    path = root / run_name / stage
    path.mkdir(parents=True, exist_ok=True)
    return path


def upstream(override: str, run_name: str, stage: str, relative: str, output_root: str | Path = "outputs") -> Path:
    """An artefact an earlier notebook wrote: `override` when set, else outputs/<run_name>/<stage>/<relative>;
    a clear error naming the notebook to run when it is missing."""
    path = Path(override) if override else stage_dir(run_name, stage, output_root) / relative
    if not path.exists():
        hint = f"set its path or run {stage} for run '{run_name}' first" if not override else "check the path"
        raise FileNotFoundError(f"{path} not found: {hint}")
    return path


def dpo_runs(run_name: str, output_root: str | Path = "outputs") -> dict[str, dict]:
    """The runs notebook 04 recorded in its metrics.json (label -> variant, seed, dir, model, ...); {} before it
    has run. A run's folder is where it was trained: plain DPO's first seed may be the budget sweep's run."""
    metrics = stage_dir(run_name, "04_hae_dpo", output_root) / "metrics.json"
    if not metrics.exists():
        return {}
    try:
        return json.loads(metrics.read_text(encoding="utf-8")).get("runs", {})
    except json.JSONDecodeError as err:
        raise ValueError(f"{metrics}: not valid JSON ({err}); rerun notebook 04 for run '{run_name}'") from None


def dpo_models(run_name: str, output_root: str | Path = "outputs") -> dict[str, str]:
    """Variant -> the model of notebook 04's first-seed run of it (its label is the variant's name)."""
    return {run["variant"]: run["model"] for label, run in dpo_runs(run_name, output_root).items()
            if label == run["variant"]}


def dpo_model(variant: str, run_name: str, output_root: str | Path = "outputs") -> str:
    """The model of notebook 04's first-seed run of `variant`; an error naming 04's metrics.json when there is none."""
    models = dpo_models(run_name, output_root)
    if variant not in models:
        metrics = stage_dir(run_name, "04_hae_dpo", output_root) / "metrics.json"
        raise FileNotFoundError(f"{metrics}: notebook 04 recorded no first-seed run of {variant!r} "
                                f"(its runs: {sorted(models) or 'none'}); run notebook 04 for run '{run_name}'")
    return models[variant]


# "owner/name" as the hub spells a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def model_source(path_or_name: str | Path) -> str:
    """A model to load: a local folder must exist and hold config.json; a hub id passes through unchanged."""
    text = str(path_or_name)
    path = Path(text).expanduser()
    looks_like_hub_id = bool(_HUB_ID.match(text)) and not path.parent.exists()
    if path.exists() or not looks_like_hub_id:
        if not path.is_dir():
            raise FileNotFoundError(f"model folder {path} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json; is it a saved checkpoint?")
        return str(path)
    return text


def sft_model(sft_model_path: str, run_name: str, output_root: str | Path = "outputs") -> str:
    """The SFT checkpoint: `sft_model_path` when set, else the `sft_model` notebook 02 recorded for this run."""
    if sft_model_path:
        return model_source(sft_model_path)
    metrics = upstream("", run_name, "02_sft", "metrics.json", output_root)
    return model_source(json.loads(metrics.read_text(encoding="utf-8"))["sft_model"])
