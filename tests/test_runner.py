"""The notebooks run headless: through `editcaption run` and through plain papermill, with the smoke profile."""
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from editcaption import config, paths, runner

ROOT = paths.repo_root()
BIN = Path(sys.executable).parent


@pytest.mark.slow
def test_run_smoke_profile_writes_executed_notebook_and_metrics(smoke_run):
    """`editcaption run --profile smoke` (the session's shared run): each executed notebook, metrics and run.json."""
    run, results = smoke_run
    assert [r.status for r in results] == ["ok"] * len(results) and len(results) == len(config.list_notebooks())
    stage = run / "01_dataset_construction"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["n_pairs"] == 48
    assert abs(sum(metrics["category_share"].values()) - 1) < 1e-9
    assert (stage / "figure2_distribution.png").stat().st_size > 10_000
    assert (stage / "examples.png").exists() and (stage / "pairs" / "state.json").exists()
    assert (run / "01_dataset_construction.ipynb").exists()
    summary = json.loads((run / "run.json").read_text())
    by_name = {s["notebook"]: s for s in summary["stages"]}
    assert by_name["01_dataset_construction.ipynb"]["metrics"]["n_pairs"] == 48


@pytest.mark.slow
def test_plain_papermill_with_a_profile_file_works_the_same(tmp_path):
    out = tmp_path / "01.ipynb"
    cmd = [str(BIN / "papermill"), "notebooks/01_dataset_construction.ipynb", str(out), "-f", "params/smoke.yaml",
           "-p", "output_root", str(tmp_path), "-p", "run_name", "pm", "--no-progress-bar"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    metrics = json.loads((tmp_path / "pm" / "01_dataset_construction" / "metrics.json").read_text())
    assert metrics["n_pairs"] == 48


def _fake_checkout(tmp_path: Path) -> Path:
    (tmp_path / "params").mkdir()
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "params" / "p.yaml").write_text("# test: CPU\nrun_name: fail\n")
    cells = [nbformat.v4.new_code_cell('run_name = "x"  # run\noutput_root = "outputs"  # root\nseed = 0  # seed'),
             nbformat.v4.new_code_cell("print('fine')"),
             nbformat.v4.new_code_cell("raise ValueError('boom in the third cell')")]
    cells[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}})
    nbformat.write(nb, tmp_path / "notebooks" / "01_fails.ipynb")
    return tmp_path


@pytest.mark.slow
def test_failure_names_notebook_and_cell(tmp_path, monkeypatch):
    root = _fake_checkout(tmp_path)
    monkeypatch.setenv(paths.ROOT_ENV, str(root))
    with pytest.raises(runner.NotebookFailed) as info:
        runner.run_profile("p", output_root=str(root / "outputs"), progress=False)
    message = str(info.value)
    assert "01_fails.ipynb" in message and "cell 3" in message and "boom in the third cell" in message
    summary = json.loads((root / "outputs" / "fail" / "run.json").read_text())
    assert summary["stages"][0]["status"] == "failed"


def test_only_with_an_unknown_number_is_refused():
    with pytest.raises(runner.NotebookFailed, match="no notebook numbered 42"):
        runner.select_notebooks("01,42")


def test_cli_run_failure_exits_nonzero_with_message(tmp_path):
    root = _fake_checkout(tmp_path)
    env = {**os.environ, paths.ROOT_ENV: str(root)}
    proc = subprocess.run([str(BIN / "editcaption"), "run", "--profile", "p", "--no-progress"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "01_fails.ipynb failed in cell 3" in proc.stderr
