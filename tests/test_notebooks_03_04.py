"""Notebooks 01–04 under the smoke profile, as `editcaption run --profile smoke --only 01,02,03,04` runs them."""
import json

import pytest

from editcaption import runner
from editcaption.data.preference import MODES
from editcaption.train.hae_dpo import load_preferences


@pytest.mark.slow
def test_smoke_01_to_04_builds_preferences_trains_variants_and_scores(tmp_path):
    results = runner.run_profile("smoke", only="01,02,03,04", run_name="nb04", output_root=str(tmp_path),
                                 progress=False)
    assert [r.status for r in results] == ["ok"] * 4
    prefs_stage, dpo_stage = tmp_path / "nb04" / "03_preference_data", tmp_path / "nb04" / "04_hae_dpo"

    prefs = json.loads((prefs_stage / "metrics.json").read_text())
    counts = prefs["counts"]
    assert prefs["rejected_source"] == "simulated-teacher" and counts["candidate_pairs"] == 96
    assert counts["n_candidates"] == counts["n_rejected"] + counts["n_clean"] + counts["n_other_dropped"] + counts[
        "n_off_topic_dropped"] + counts["n_empty"]
    assert counts["corrected"] == counts["n_rejected"] and prefs["correction"]["annotator"] == "simulated"
    assert counts["preference_rows"] == counts["balanced"] > 0 and set(prefs["shortfall"].values()) == {0}
    assert set(prefs["achieved_mix"]) == set(MODES) and sum(prefs["severity_counts"].values()) == counts["balanced"]
    rows, skipped = load_preferences(prefs["preference_data_path"])
    assert len(rows) == counts["preference_rows"] and not skipped
    assert (prefs_stage / "mode_severity.png").exists() and (prefs_stage / "examples.png").exists()

    dpo = json.loads((dpo_stage / "metrics.json").read_text())
    assert dpo["variants"] == ["dpo", "hae"] and set(dpo["results"]) == {"dpo", "hae"}
    for variant in ("dpo", "hae"):
        assert dpo["train"][variant]["global_step"] == 4 and dpo["train"][variant]["dpo_variant"] == variant
        assert dpo["train"][variant]["reference_model"] == dpo["sft_model"]
        assert dpo["train_wall_seconds"][variant] > 0
        assert dpo["final_rewards"][variant]["rewards/accuracies"] is not None
        assert dpo["results"][variant]["n"] == 16 and set(dpo["results"][variant]["failure_rates"]) == set(MODES)
        assert (dpo_stage / variant / "final" / "config.json").exists()
        assert "accelerate.commands.launch" in (dpo_stage / variant / "train.log").read_text().splitlines()[0]
    assert dpo["final_rewards"]["dpo"]["hae/margin_mean"] == 0 and dpo["final_rewards"]["hae"]["hae/margin_mean"] > 0
    assert dpo["table4"]["SFT"]["Δ S"] == 0 and dpo["margins"]["n"] == counts["preference_rows"]
    for figure in ("margin_distributions", "margin_terms", "reward_margins", "logged_margins", "table4"):
        assert (dpo_stage / f"{figure}.png").exists(), figure
