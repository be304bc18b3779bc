"""Profiles: flat YAML files in params/ whose keys are the notebooks' parameter names.

The notebooks' `parameters` cells are the schema: every key a profile sets must be declared by at
least one notebook, with a value of the declared default's type. A profile that breaks this is
refused with an error naming the file, the key, and the expected and found types.
"""
from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from editcaption import paths


class ConfigError(ValueError):
    """A profile or a parameters cell that cannot be used; the message names file and key."""


@dataclass(frozen=True)
class Parameter:
    name: str
    default: Any
    comment: str
    notebook: str

    @property
    def type(self) -> type | None:
        """The declared type (None when the default is None: any value is accepted)."""
        return None if self.default is None else type(self.default)


def parameters_cell(notebook: str | Path) -> str:
    """The source of the cell tagged `parameters` in a notebook."""
    nb = json.loads(Path(notebook).read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            src = cell["source"]
            return "".join(src) if isinstance(src, list) else src
    raise ConfigError(f"{notebook}: no code cell tagged 'parameters'")


def notebook_parameters(notebook: str | Path) -> dict[str, Parameter]:
    """Parse a notebook's parameters cell: one `name = literal  # comment` per line."""
    notebook = Path(notebook)
    source = parameters_cell(notebook)
    lines = source.splitlines()
    params: dict[str, Parameter] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            raise ConfigError(f"{notebook.name}: parameters cell line {node.lineno}: only `name = literal` is allowed")
        name = node.targets[0].id
        try:
            default = ast.literal_eval(node.value)
        except ValueError:
            raise ConfigError(f"{notebook.name}: parameter '{name}' must be a literal (no calls or derived values)") from None
        line = lines[node.lineno - 1]
        comment = line.split("#", 1)[1].strip() if "#" in line[node.value.end_col_offset:] else ""
        params[name] = Parameter(name, default, comment, notebook.name)
    return params


def list_notebooks(folder: str | Path | None = None) -> list[Path]:
    """The numbered notebooks (NN_name.ipynb) in order."""
    folder = Path(folder) if folder else paths.notebooks_dir()
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def parameter_schema(notebooks: list[Path] | None = None) -> dict[str, Parameter]:
    """Union of every notebook's parameters; a name declared twice must keep one type."""
    schema: dict[str, Parameter] = {}
    for nb in notebooks if notebooks is not None else list_notebooks():
        for name, param in notebook_parameters(nb).items():
            seen = schema.get(name)
            if seen and seen.type is not None and param.type is not None and seen.type is not param.type:
                raise ConfigError(
                    f"parameter '{name}' is {seen.type.__name__} in {seen.notebook} but "
                    f"{param.type.__name__} in {param.notebook}"
                )
            schema.setdefault(name, param)
    return schema


def profile_path(name_or_path: str | Path) -> Path:
    """`smoke` → params/smoke.yaml; a path is taken as it is."""
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return paths.params_dir() / f"{name_or_path}.yaml"


def _type_ok(expected: type, value: Any) -> bool:
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def validate_profile(values: dict[str, Any], schema: dict[str, Parameter], *, file: str | Path = "<profile>") -> None:
    for key, value in values.items():
        if key not in schema:
            raise ConfigError(f"{file}: unknown key '{key}' (no notebook declares it in its parameters cell)")
        expected = schema[key].type
        if expected is not None and not _type_ok(expected, value):
            raise ConfigError(
                f"{file}: key '{key}' expects {expected.__name__} (default {schema[key].default!r} in "
                f"{schema[key].notebook}), found {type(value).__name__} {value!r}"
            )


def read_flat_yaml(path: Path, what: str) -> dict[str, Any]:
    """A YAML file's mapping (empty file: {}); not YAML, or not a mapping, is a ConfigError naming the file."""
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: {what} must be a flat mapping of key: value, found {type(values).__name__}")
    return values


def load_profile(name_or_path: str | Path, *, schema: dict[str, Parameter] | None = None) -> dict[str, Any]:
    """Read and validate a profile; returns its flat key → value mapping."""
    path = profile_path(name_or_path)
    if not path.exists():
        available = ", ".join(sorted(p.stem for p in paths.params_dir().glob("*.yaml")))
        raise ConfigError(f"profile {path} not found (available: {available})")
    values = read_flat_yaml(path, "a profile")
    for key, value in values.items():
        if isinstance(value, dict):
            raise ConfigError(f"{path}: key '{key}' holds a nested mapping; profiles are flat")
    validate_profile(values, schema if schema is not None else parameter_schema(), file=path)
    return values
