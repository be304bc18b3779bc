"""`editcaption run`: execute the numbered notebooks in order with papermill under one profile.

Each notebook gets the profile's keys that its parameters cell declares (what `papermill -f
params/NAME.yaml` passes, minus the keys meant for other notebooks) plus `run_name`; executed copies
land in outputs/<run_name>/, next to each stage's artefacts, and outputs/<run_name>/run.json records
what ran, for how long, and each stage's metrics; outputs/<run_name>/index.html links the executed notebooks
(exported to HTML) with every stage's tables and figures.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from editcaption import config, paths
from editcaption.reporting import site
from editcaption.train import recipe

RECIPE_PARAMETERS = {"sft_recipe": "sft", "dpo_recipe": "dpo"}  # notebook parameter -> training stage of its recipe


class NotebookFailed(RuntimeError):
    """A notebook raised; the message names the notebook, the cell and the error."""


@dataclass
class StageResult:
    notebook: str
    executed: str
    seconds: float
    status: str
    metrics: dict


def select_notebooks(only: str | None) -> list[Path]:
    """All numbered notebooks, or those whose number prefix is listed in `only` ("01,02")."""
    notebooks = config.list_notebooks()
    if not notebooks:
        raise NotebookFailed(f"no numbered notebooks in {paths.notebooks_dir()}")
    if not only:
        return notebooks
    wanted = [w.strip().zfill(2) for w in only.split(",") if w.strip()]
    by_number = {nb.name[:2]: nb for nb in notebooks}
    unknown = [w for w in wanted if w not in by_number]
    if unknown:
        raise NotebookFailed(f"--only {only}: no notebook numbered {', '.join(unknown)} (have {', '.join(by_number)})")
    return [by_number[w] for w in sorted(set(wanted))]


def _failure_message(nb: Path, executed: Path, exc: Exception) -> str:
    """Name the failing cell as it is numbered in the source notebook (papermill's injected-parameters
    cell does not count), with its first line, and the error."""
    index = getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    where, first_line = "an unknown cell", ""
    if index is not None and executed.exists():
        import nbformat

        cells = nbformat.read(executed, as_version=4).cells
        injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:index])
        where = f"cell {index - injected + 1} (counting from 1)"
        first_line = cells[index].source.strip().splitlines()[0] if cells[index].source.strip() else ""
    elif index is not None:
        where = f"cell {index + 1} (counting from 1)"
    lines = [f"{nb.name} failed in {where}: {ename}: {evalue}"]
    if first_line:
        lines.append(f"  the cell starts: {first_line}")
    lines.append(f"  executed copy with the traceback: {executed}")
    return "\n".join(lines)


def check_recipes(values: dict) -> None:
    """Read every recipe the profile names (or the notebooks' default), so that a missing file or an unknown
    field stops the run before notebook 00 starts, not after an hour of it."""
    schema = config.parameter_schema()
    for name, stage in RECIPE_PARAMETERS.items():
        if name in schema:  # a notebook declares it (a project without the training notebooks has none)
            recipe.read_recipe(values.get(name, schema[name].default), stage)


def run_profile(profile: str, *, only: str | None = None, run_name: str | None = None,
                output_root: str = "outputs", progress: bool = True, browsable: bool = True) -> list[StageResult]:
    """Validate the profile, then execute the selected notebooks in order; stop at the first failure. After the last
    notebook, `browsable` exports every executed notebook of the run folder to HTML and writes its index.html."""
    import papermill
    from tqdm.auto import tqdm

    values = config.load_profile(profile)
    check_recipes(values)
    run_name = run_name or values.get("run_name") or config.profile_path(profile).stem
    values = {**values, "run_name": run_name, "output_root": output_root}
    run_dir = paths.stage_dir(run_name, "", output_root)
    root = paths.repo_root()
    results: list[StageResult] = []
    notebooks = select_notebooks(only)
    bar = tqdm(notebooks, desc=f"run {run_name}", unit="notebook", disable=not progress)
    for nb in bar:
        bar.set_postfix_str(nb.stem)
        declared = config.notebook_parameters(nb)
        params = {k: v for k, v in values.items() if k in declared}
        executed = run_dir / nb.name
        start = time.time()
        try:
            papermill.execute_notebook(str(nb), str(executed), parameters=params, cwd=str(root),
                                       progress_bar=progress, kernel_name="python3")
        except Exception as exc:  # papermill wraps the kernel's error; report where it happened
            results.append(StageResult(nb.name, str(executed), time.time() - start, "failed", {}))
            _write_summary(run_dir, profile, results)
            raise NotebookFailed(_failure_message(nb, executed, exc)) from exc
        metrics_file = run_dir / nb.stem / "metrics.json"
        metrics = json.loads(metrics_file.read_text()) if metrics_file.exists() else {}
        results.append(StageResult(nb.name, str(executed), time.time() - start, "ok", metrics))
        _write_summary(run_dir, profile, results)
    if browsable:
        index = site.build_site(run_dir)
        if progress:
            print(f"browse the run: {index}")
    return results


def _write_summary(run_dir: Path, profile: str, results: list[StageResult]) -> None:
    summary = {"profile": str(profile), "stages": [r.__dict__ for r in results]}
    (run_dir / "run.json").write_text(json.dumps(summary, indent=2) + "\n")
