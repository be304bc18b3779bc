"""The package's floor plan (lib/editcaption/README.md): every module stands on one floor and imports only from
its own floor or below, at module top or inside a function alike. A new module must be given a floor here."""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "lib" / "editcaption"

# Bottom to top. A name is a module or a package (then every module in it, unless a longer name says otherwise).
FLOORS = (
    ("contracts", ("records", "paths", "prompts", "vocab", "rubric")),
    ("support", ("env", "config", "jsonl_cache", "annotation", "labelstudio_live")),
    ("world", ("world",)),
    ("machines", ("models", "generation")),
    ("data", ("data",)),
    ("train and eval", ("train", "eval", "downstream")),
    ("reporting", ("reporting",)),
    ("runner and cli", ("runner", "cli")),
)
FLOOR_OF = {name: k for k, (_, names) in enumerate(FLOORS) for name in names}

# Modules over ~500 lines, each with the one job its docstring names; a module that grows past the mark fails
# until it is split or listed here with its job.
LONG_MODULES = {
    "world.rule_judge": "the rule judge: one instruction read against a pair's recorded changes",
    "annotation": "the human annotation contracts: checklist, sheets, validated append-only imports",
    "eval.human": "the human evaluation: labels, table 2, agreement",
    "models.pretrain": "the tiny-world pre-training of the base model and its probes",
    "generation": "the captioning backends (transformers, OpenAI-compatible, simulated) behind one interface",
    "data.loaders": "the real-dataset loaders, each in its dataset's schema",
    "eval.llm_judge": "the LLM judge on the OpenAI client: prompts sent, replies parsed, cached, counted",
}


def modules() -> dict[str, Path]:
    """Dotted name below editcaption (a package's __init__ under the package's name) -> file."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name or "__init__"] = path
    return found


def floor(name: str) -> int | None:
    """The floor of a module: its own entry, else the nearest package above it that has one."""
    parts = name.split(".")
    for k in range(len(parts), 0, -1):
        if ".".join(parts[:k]) in FLOOR_OF:
            return FLOOR_OF[".".join(parts[:k])]
    return None


def imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """(module of editcaption imported, line) for every import in the file, inside functions too."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names]
        for full in names:
            if full.split(".")[0] != "editcaption":
                continue
            target = full.removeprefix("editcaption").lstrip(".")
            while target and target not in known:  # editcaption.x.y.NAME -> the module x.y
                target = target.rpartition(".")[0]
            if target:
                out.append((target, node.lineno))
    return out


def test_every_module_has_a_floor():
    missing = [name for name in modules() if name != "__init__" and floor(name) is None]
    assert not missing, f"give these modules a floor in tests/test_layers.py FLOORS: {missing}"


def test_no_import_points_up():
    found = modules()
    upward = []
    for name, path in found.items():
        for target, line in imports(path, set(found)):
            if name != "__init__" and floor(target) > floor(name):
                upward.append(f"{path.relative_to(PACKAGE)}:{line} {name} ({FLOORS[floor(name)][0]}) imports "
                              f"{target} ({FLOORS[floor(target)][0]})")
    assert not upward, "imports that point up a floor:\n" + "\n".join(upward)


def test_packages_on_one_floor_do_not_import_each_other_both_ways():
    found = modules()
    edges = defaultdict(set)
    for name, path in found.items():
        for target, _ in imports(path, set(found)):
            a, b = name.split(".")[0], target.split(".")[0]
            if a != b:
                edges[a].add(b)
    loops = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in edges.get(b, ())})
    assert not loops, f"packages that import each other: {loops}"


def test_no_private_name_is_imported_from_another_module():
    found = modules()
    private = []
    for name, path in found.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("editcaption"):
                private += [f"{name} imports {node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
    assert not private, private


@pytest.mark.parametrize("name", sorted(modules()))
def test_a_long_module_is_listed_with_its_one_job(name):
    path = modules()[name]
    lines = len(path.read_text(encoding="utf-8").splitlines())
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    if lines > 500:
        assert name in LONG_MODULES, f"{name} has {lines} lines: split it, or list it in LONG_MODULES with its one job"
        assert docstring, f"{name} has {lines} lines and no docstring naming its job"


def test_the_floor_plan_catches_an_upward_import(tmp_path):
    """The check itself: a data module importing the reporting floor is reported."""
    module = tmp_path / "probe.py"
    module.write_text("def f():\n    from editcaption.reporting.tables import ci_cell\n")
    [(target, line)] = imports(module, set(modules()))
    assert (target, line) == ("reporting.tables", 2) and floor(target) > floor("data.probe")
