"""Recipes: flat YAML files of trainer fields (params/recipes/<name>/sft.yaml, dpo.yaml), read the way
alignment-handbook reads its recipes, with TRL's `TrlParser` over the stage's config dataclasses
(`configs.CaptionSFTConfig` or `configs.HAEDPOConfig`, plus `configs.VisionModelConfig`).

    python -m editcaption.train.sft --config params/recipes/demo/sft.yaml [--field value ...]

A notebook adds what belongs to the run (model_name_or_path, dataset_path, output_dir, seed, run_name) and
launches the stage with the result, which it writes beside its outputs. A key that no dataclass of the stage
declares is refused with the file and the nearest field names.
"""
from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from pathlib import Path
from typing import Any, Mapping

import yaml

from editcaption import paths
from editcaption.config import ConfigError, read_flat_yaml
from editcaption.train.configs import CaptionSFTConfig, HAEDPOConfig, VisionModelConfig

STAGES = {"sft": (CaptionSFTConfig, VisionModelConfig), "dpo": (HAEDPOConfig, VisionModelConfig)}


def stage_fields(stage: str) -> dict[str, dataclasses.Field]:
    """Every field the stage's dataclasses declare (the trainer's config first), by name."""
    if stage not in STAGES:
        raise ConfigError(f"unknown training stage {stage!r}; stages: {', '.join(STAGES)}")
    found: dict[str, dataclasses.Field] = {}
    for cls in STAGES[stage]:
        for f in dataclasses.fields(cls):
            if f.init:
                found.setdefault(f.name, f)
    return found


def recipe_path(name_or_path: str | Path) -> Path:
    """A recipe path: as given when it exists (or is absolute), else from the repo root (profiles name
    `params/recipes/...`, whatever folder a notebook or command runs in)."""
    path = Path(name_or_path)
    return path if path.is_absolute() or path.exists() else paths.repo_root() / path


def _scalar_types(stage: str) -> dict[str, tuple[type, bool]]:
    """Field -> (int, float or bool, whether None is allowed) for the stage's plain scalar fields."""
    out = {}
    for cls in STAGES[stage]:
        for name, hint in typing.get_type_hints(cls).items():
            args = set(typing.get_args(hint)) or {hint}
            scalars = args - {type(None)}
            if len(scalars) == 1 and next(iter(scalars)) in (int, float, bool):
                out.setdefault(name, (next(iter(scalars)), type(None) in args))
    return out


def _type_ok(expected: type, value: Any) -> bool:
    if isinstance(value, bool):
        return expected is bool
    return isinstance(value, int) if expected is int else isinstance(value, (int, float)) and expected is float


def check_recipe(values: Mapping[str, Any], stage: str, *, file: str | Path = "<recipe>") -> None:
    """Every key is a field of the stage (ConfigError naming the file, the key and the nearest field names), and a
    number or true/false field holds one. Text is left to TrlParser, which parses it as the command line would
    (YAML reads 1e-5 as text; argparse makes it a float or names the field it cannot)."""
    known = stage_fields(stage)
    scalars = _scalar_types(stage)
    for key, value in values.items():
        if key not in known:
            near = difflib.get_close_matches(key, list(known), n=3, cutoff=0.6)
            hint = f"; did you mean {', '.join(near)}?" if near else ""
            classes = " / ".join(cls.__name__ for cls in STAGES[stage])
            raise ConfigError(f"{file}: unknown key '{key}' ({classes} declare no such field){hint}")
        expected, nullable = scalars.get(key, (None, True))
        if expected is None or isinstance(value, str) or (value is None and nullable) or _type_ok(expected, value):
            continue
        raise ConfigError(f"{file}: key '{key}' expects {expected.__name__}{' or null' if nullable else ''}, "
                          f"found {type(value).__name__} {value!r}")


def read_recipe(name_or_path: str | Path, stage: str) -> dict[str, Any]:
    """A recipe's flat mapping, its keys checked against the stage's fields."""
    path = recipe_path(name_or_path)
    if not path.is_file():
        raise ConfigError(f"recipe {path} not found (recipes live in params/recipes/<name>/sft.yaml and dpo.yaml)")
    values = read_flat_yaml(path, "a recipe")
    check_recipe(values, stage, file=path)
    return values


def with_run(recipe: Mapping[str, Any], stage: str, **run: Any) -> dict[str, Any]:
    """The recipe with the run's own fields (model, data, output folder, seed, ...) set over it, checked."""
    check_recipe(run, stage, file="the notebook's run fields")
    return {**recipe, **run}


def run_recipe(name_or_path: str | Path, stage: str, **run: Any) -> dict[str, Any]:
    """A recipe file read and checked, with the run's own fields set over it."""
    return with_run(read_recipe(name_or_path, stage), stage, **run)


def resolved(values: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """Every field of the stage: the value given, else the dataclass default (before __post_init__ settles
    the ones TRL derives, such as bf16)."""
    out = {}
    for name, f in stage_fields(stage).items():
        if name in values:
            out[name] = values[name]
        elif f.default is not dataclasses.MISSING:
            out[name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[name] = f.default_factory()
    return out


def write_recipe(values: Mapping[str, Any], path: str | Path) -> Path:
    """The fields a stage was launched with, as a recipe file (what the launched process reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("# written by editcaption.train.launch: the recipe this stage was launched with\n"
                    + yaml.safe_dump(dict(values), sort_keys=True), encoding="utf-8")
    return path


def parse_stage_args(stage: str, argv: list[str] | None = None):
    """(trainer config, model config) from `--config FILE [--field value ...]` with TRL's TrlParser; a bad key
    or value exits with argparse's message naming it."""
    from trl import TrlParser

    parser = TrlParser(STAGES[stage])
    args = list(argv) if argv is not None else sys.argv[1:]
    if "--config" in args:
        where = args.index("--config") + 1
        if where >= len(args):
            parser.error("--config needs a recipe file")
        try:
            read_recipe(args[where], stage)
        except ConfigError as exc:
            parser.error(str(exc))
        args[where] = str(recipe_path(args[where]))  # what was read is what TrlParser opens
    try:
        return parser.parse_args_and_config(args)
    except ConfigError as exc:
        parser.error(str(exc))


def build_stage_args(stage: str, values: Mapping[str, Any]):
    """(trainer config, model config) from a mapping of fields, as `parse_stage_args` builds them from a file."""
    check_recipe(values, stage)
    configs = []
    for cls in STAGES[stage]:
        names = {f.name for f in dataclasses.fields(cls) if f.init}
        configs.append(cls(**{k: v for k, v in values.items() if k in names}))
    return tuple(configs)
