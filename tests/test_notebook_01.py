"""Notebook 01 of the shared smoke run (tests/conftest.py): the whole construction chain and what it writes."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from editcaption import annotation, paths
from editcaption.data import construct
from editcaption.records import load_pairs
from editcaption.train.sft import load_sft_dataset

ROOT = paths.repo_root()
STAGE = "01_dataset_construction"


@pytest.fixture(scope="module")
def stage01(smoke_run):
    """Notebook 01's folder and metrics in the shared smoke run (tests/conftest.py)."""
    run, results = smoke_run
    assert results[0].status == "ok"
    stage = run / STAGE
    return stage, json.loads((stage / "metrics.json").read_text())


@pytest.mark.slow
def test_filter_and_refinement_lower_the_critical_error_share(stage01):
    _, metrics = stage01
    p0 = metrics["p0_share"]
    assert 0.3 <= p0["raw captions"] <= 0.65, p0  # the teacher is calibrated at ~47 %
    assert p0["after filter"] < p0["raw captions"]
    assert p0["after refinement"] < p0["raw captions"] / 3
    teacher = metrics["teacher"]
    assert teacher["p0_agreement"] == 1.0 and teacher["p0_share"] == p0["raw captions"]
    assert all(m["found"] == m["injected"] for m in teacher["modes"].values())


@pytest.mark.slow
def test_funnel_counts_add_up(stage01):
    _, metrics = stage01
    counts, filtered = metrics["funnel"], metrics["filter"]
    assert counts["pairs"] == metrics["n_pairs"] == 48
    assert counts["scored"] == filtered["n_scored"] == filtered["n_kept"] + filtered["n_below"]
    assert counts["kept by filter"] == filtered["n_kept"] == metrics["refinement"]["n_read"]
    assert counts["SFT train"] + counts["SFT validation"] == counts["refined"] == metrics["refinement"]["n_refined"]
    assert filtered["n_score_failures"] == 0 and filtered["scores_after"]["overall"]["min"] >= 4.0
    assert filtered["scores_before"]["overall"]["min"] < 4.0


@pytest.mark.slow
def test_written_sets_load_and_do_not_overlap(stage01):
    stage, metrics = stage01
    train, validation = load_sft_dataset(stage / "sft" / "train"), load_sft_dataset(stage / "sft" / "validation")
    test = load_pairs(stage / "test_pairs")
    assert (len(train), len(validation), len(test)) == (metrics["n_sft_train"], metrics["n_sft_validation"], 24)
    construct.check_no_overlap({"train": train, "validation": validation, "test": test})
    construct.check_no_overlap({"all pairs built for training": load_pairs(stage / "pairs"), "test": test})
    for name in ("examples", "figure2_distribution", "score_histogram", "funnel", "failure_modes",
                 "refinement_examples"):
        assert (stage / f"{name}.png").stat().st_size > 5_000, name
    assert (stage / "refinement" / "labelstudio_tasks.json").exists()
    assert len(annotation.merged_view("refinement", stage / "annotations", annotator="simulated")) == len(train) + len(
        validation)


@pytest.mark.slow
def test_papermill_with_a_human_refinement_file(stage01, tmp_path):
    """The plain papermill command; the refinement comes from a person's file instead of the simulation."""
    stage, _ = stage01
    rows = annotation.read_sheet(stage / "refinement" / "sheet.jsonl")  # the same seed exports the same sheet
    for row in rows:
        row["refined_instruction"] = "Human: " + row["candidate_instruction"]
    human = annotation.write_sheet("refinement", rows, tmp_path / "refined_by_hand.csv")
    out = tmp_path / "01.ipynb"
    cmd = [str(Path(sys.executable).parent / "papermill"), "notebooks/01_dataset_construction.ipynb", str(out),
           "-f", "params/smoke.yaml", "-p", "output_root", str(tmp_path), "-p", "run_name", "pm",
           "-p", "refinement_import_path", str(human), "--no-progress-bar"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pm_stage = tmp_path / "pm" / STAGE
    metrics = json.loads((pm_stage / "metrics.json").read_text())
    assert metrics["refinement"]["annotator"] == "human" and metrics["refinement"]["n_refined"] == len(rows)
    train = load_sft_dataset(pm_stage / "sft" / "train")
    assert all(row[0]["content"][0]["text"].startswith("Human: ") for row in train["completion"])
