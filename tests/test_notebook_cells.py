"""Notebooks only call the package: outside the parameters cell, a code cell is at most six lines with no loop,
branch or function of its own (no for / while / if / def / lambda / with / try, no comprehension, no conditional
expression). The cells still to convert (issue 17) are listed by their cell id; the list only shrinks: a new
cell that breaks the rule fails, and so does a listed cell that no longer does (take it off the list)."""
import ast
import json

import pytest

from editcaption import config, paths

MAX_LINES = 6
LOGIC = (ast.For, ast.AsyncFor, ast.While, ast.If, ast.IfExp, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda,
         ast.ClassDef, ast.With, ast.Try, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)

TO_CONVERT = {  # notebook -> ids of the cells that still hold logic or run long
    "00_tiny_world_pretraining": set(),  # converted
    "01_dataset_construction": set(),  # converted
    "02_sft": set(),  # converted
    "03_preference_data": set(),  # converted
    "04_hae_dpo": set(),  # converted
    "05_automatic_evaluation": set(),  # converted
    "06_human_evaluation": set(),  # converted
    "07_downstream_editing": set(),  # converted
    "08_paper_tables_and_figures": set(),  # converted
}


def broken_rules(source: str) -> list[str]:
    """What a cell's code does that a notebook cell should not ([] when it only calls and shows)."""
    problems = []
    lines = [line for line in source.splitlines() if line.strip()]
    if len(lines) > MAX_LINES:
        problems.append(f"{len(lines)} lines")
    tree = ast.parse("\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))))
    problems += sorted({type(node).__name__ for node in ast.walk(tree) if isinstance(node, LOGIC)})
    return problems


def cells_breaking_rules(path) -> dict[str, list[str]]:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    for cell in notebook["cells"]:
        if cell["cell_type"] != "code" or "parameters" in cell["metadata"].get("tags", []):
            continue
        problems = broken_rules("".join(cell["source"]))
        if problems:
            out[cell["id"]] = problems
    return out


@pytest.mark.parametrize("notebook", sorted(TO_CONVERT))
def test_code_cells_only_call_the_package(notebook):
    path = paths.notebooks_dir() / f"{notebook}.ipynb"
    found = cells_breaking_rules(path)
    new = {cid: p for cid, p in found.items() if cid not in TO_CONVERT[notebook]}
    assert not new, f"{notebook}: cells with logic or over {MAX_LINES} lines (move it into the package): {new}"
    fixed = TO_CONVERT[notebook] - set(found)
    assert not fixed, f"{notebook}: cells {sorted(fixed)} follow the rule now; take them off TO_CONVERT"


def test_every_notebook_is_checked():
    assert sorted(p.stem for p in config.list_notebooks()) == sorted(TO_CONVERT)


def test_the_rule_sees_a_loop_a_branch_and_a_long_cell():
    assert broken_rules("x = f(a)\ny = g(x)") == []
    assert broken_rules("for a in b:\n    f(a)") == ["For"]
    assert broken_rules("y = [f(a) for a in b] if b else None") == ["IfExp", "ListComp"]
    assert broken_rules("\n".join(f"x{k} = {k}" for k in range(7))) == ["7 lines"]
