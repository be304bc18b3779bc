"""Notebook 07 of the shared smoke run (tests/conftest.py): the CPU table 5 and its files (skipping: tests/test_editor.py)."""
import json

import pandas as pd
import pytest

from editcaption import records
from editcaption.downstream import read_instructpix2pix
from editcaption.downstream.editor import TrainedEditor

STAGE = "07_downstream_editing"
LABELS = ["base (no SFT)", "SFT", "HAE-DPO (hae)", "teacher (simulated)", "GT instructions (upper bound)"]


@pytest.fixture(scope="module")
def run(smoke_run):
    """The shared smoke run (tests/conftest.py), every notebook of it run."""
    folder, results = smoke_run
    assert [r.status for r in results] == ["ok"] * len(results) and len(results) == 9
    return folder


@pytest.mark.slow
def test_smoke_07_trains_an_editor_per_captioner_and_writes_table5(run):
    stage = run / STAGE
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["skipped"] == {} and set(metrics["captioners"]) == {"base", "sft", "hae_dpo", "teacher", "gt"}
    assert set(metrics["results"]) == {*LABELS, "identity (no edit)"}  # metrics.json sorts its keys
    n_train, n_eval = metrics["n_train_pairs"], metrics["n_eval_pairs"]
    for key, c in metrics["captioners"].items():
        assert c["n_triplets"] + len(c["export"]["skipped"]) == n_train, key
        assert c["editor"]["n_triplets"] == c["n_triplets"] and c["editor"]["seconds"] > 0
        assert c["editor"]["final_loss"] < c["editor"]["first_loss"], key
        assert len(read_instructpix2pix(stage / "triplets" / key)) == c["n_triplets"]
        assert TrainedEditor.load(c["editor_dir"]).info == c["editor"]
    gt = metrics["captioners"]["gt"]
    assert gt["caption_quality"]["S"] > metrics["captioners"]["base"]["caption_quality"]["S"]
    for result in metrics["results"].values():
        assert result["n"] == n_eval and 0 <= result["edit_success"]["value"] <= 100
        assert result["PSNR"]["low"] <= result["PSNR"]["value"] <= result["PSNR"]["high"]
    assert metrics["results"]["identity (no edit)"]["edit_success"]["value"] == 0
    assert metrics["captioners"]["gt"]["distinct_captions"] > 1
    assert metrics["editor_backend"] == "cpu" and metrics["step1x_table5"] is None

    long_rows = records.validate_long(pd.read_csv(stage / "table5_long.csv"))
    assert set(long_rows["table"]) == {"table5"} and set(long_rows["benchmark"]) == {"synthetic-heldout"}
    assert {"PSNR", "SSIM", "edit_success"} <= set(long_rows["metric"])
    assert any(m.startswith("edit_success:") for m in long_rows["metric"])
    display = pd.read_csv(stage / "table5.csv", index_col=0)
    assert list(display.index) == LABELS + ["identity (no edit)"]
    assert list(display.columns) == ["caption S", "PSNR", "SSIM", "edit_success"]
    for suffix in ("md", "tex"):
        assert "GT instructions" in (stage / f"table5.{suffix}").read_text()
    for name in ("table5", "op_success", "examples", "editor_loss"):
        assert (stage / f"{name}.png").stat().st_size > 1000, name
