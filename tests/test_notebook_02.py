"""Notebook 02 of the shared smoke run (tests/conftest.py), as `editcaption run --profile smoke` runs it."""
import json

import pytest


@pytest.mark.slow
def test_smoke_01_02_trains_and_scores_base_and_sft(smoke_run):
    run, results = smoke_run
    assert [r.status for r in results[:2]] == ["ok", "ok"]
    stage = run / "02_sft"
    metrics = json.loads((stage / "metrics.json").read_text())
    assert metrics["train"]["global_step"] == 8 and metrics["train"]["gradient_accumulation_steps"] == 1
    config = metrics["train"]["config"]  # the fields it trained with: the smoke recipe plus the run's own
    assert (config["learning_rate"], config["max_steps"], config["seed"], config["bf16"]) == (2e-3, 8, 0, False)
    assert config["dataset_path"].endswith("01_dataset_construction/sft/train") and config["max_length"] is None
    assert (stage / "sft_recipe.yaml").is_file()
    for model in ("base", "sft"):
        assert metrics[model]["n"] == 16 and 0 <= metrics[model]["S"] <= 5
        assert set(metrics[model]["failure_rates"]) == {"orientation", "viewpoint", "detail"}
    assert (stage / "final" / "config.json").exists() and (stage / "checkpoint-8").exists()
    assert (stage / "loss.png").exists() and (stage / "before_after.png").exists()
    log = (stage / "train.log").read_text()  # one process, no accelerate config: the entry point the cluster runs
    assert log.startswith("$ OMP_NUM_THREADS=") and "-m editcaption.train.sft --config" in log.splitlines()[0]
    assert "global batch 8 = 8 per device x 1 process(es) x 1 gradient-accumulation step(s)" in log
    gain = metrics["sft_gain"]
    assert gain["low"] <= gain["diff"] <= gain["high"] and 0 <= gain["p_value"] <= 1
    assert abs(gain["diff"] - (metrics["sft"]["S"] - metrics["base"]["S"])) < 1e-9
    assert set(metrics["direction_swaps"]["SFT"]) == {"left_right", "up_down"}
    selection = metrics["checkpoint_selection"]  # checkpoint-4 and the final model on 3 x 6 validation pairs
    assert [(c["checkpoint"], c["step"], c["n"]) for c in selection["checkpoints"]] == [("checkpoint-4", 4, 18),
                                                                                      ("final", 8, 18)]
    assert sum(c["chosen"] for c in selection["checkpoints"]) == 1 and selection["model"] == metrics["sft_model"]
    assert (stage / "checkpoint-4").exists() and (stage / "checkpoint_selection" / "final").is_dir()
