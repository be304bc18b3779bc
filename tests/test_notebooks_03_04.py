"""Notebooks 03–04 of the shared smoke run (tests/conftest.py: the smoke profile with notebook 04's budget sweep
and a second training seed switched on)."""
import json
from pathlib import Path

import pytest

from editcaption.data.preference import MODES
from editcaption.data.preference_rows import load_preferences


@pytest.mark.slow
def test_smoke_01_to_04_builds_preferences_trains_variants_and_scores(smoke_run):
    run, results = smoke_run
    assert [r.status for r in results[:4]] == ["ok"] * 4
    prefs_stage, dpo_stage = run / "03_preference_data", run / "04_hae_dpo"

    prefs = json.loads((prefs_stage / "metrics.json").read_text())
    counts, tagging = prefs["counts"], prefs["tagging"]
    assert prefs["rejected_source"] == "simulated-teacher" and counts["candidate_pairs"] == 96
    assert tagging["n_pairs"] == tagging["n_rejected"] + tagging["n_clean"] + tagging["n_other_dropped"] + tagging[
        "n_off_topic_dropped"] + tagging["n_empty"] == 96
    assert counts["corrected"] == counts["rejected"] == tagging["n_rejected"] and prefs["correction"]["annotator"] == "simulated"
    assert prefs["chosen"]["chosen_sources"].get("correction", 0) >= 0.9 * counts["corrected"]  # minimal corrections
    assert prefs["chosen"]["by_source"]["correction"]["median"] <= 6 and prefs["mining"]["n_samples"] == 0
    assert counts["preference_rows"] == counts["balanced"] > 0
    bal = prefs["balance"]  # a mode with >= min_mode_rows rows fills its quota; a rarer one keeps all it has, no padding
    for mode in MODES:
        assert bal["taken"][mode] == min(bal["target"][mode], bal["available"][mode]), mode
        assert prefs["shortfall"][mode] == bal["target"][mode] - bal["taken"][mode], mode
        assert bal["available"][mode] < 20 or prefs["shortfall"][mode] == 0, mode  # notebook 03's min_mode_rows
    assert sum(bal["taken"].values()) == counts["balanced"]
    assert set(prefs["achieved_mix"]) == set(MODES) and sum(prefs["severity_counts"].values()) == counts["balanced"]
    rows, skipped = load_preferences(prefs["preference_data_path"])
    assert len(rows) == counts["preference_rows"] and not skipped
    # the chosen answers use no joining form the SFT targets lack; chosen − rejected has no systematic sign
    assert prefs["foreign_forms"] == [] and prefs["rejected_from"] == "greedy"
    after = prefs["length_balance"]["after"]
    assert counts["length_balanced"] == prefs["length_balance"]["n_kept"] >= counts["balanced"]
    for mode, row in after.items():
        assert row["clauses +"] == row["clauses -"], (mode, row)
    for figure in ("mode_severity", "examples", "pass_rates", "edit_distances", "length_deltas"):
        assert (prefs_stage / f"{figure}.png").exists(), figure

    dpo = json.loads((dpo_stage / "metrics.json").read_text())
    assert dpo["variants"] == ["dpo", "hae", "const", "nll_only"] and dpo["seeds"] == [0, 1]
    assert set(dpo["runs"]) == {f"{v}{s}" for v in ("dpo", "hae", "const", "nll_only") for s in ("", "_seed1")}
    assert dpo["runs"]["hae_seed1"]["seed"] == 1
    # the controls: const trains with HAE-DPO's mean margin, nll_only without the preference term
    assert dpo["train"]["const"]["constant_margin"] == pytest.approx(dpo["margins"]["mean"]["margin"], abs=1e-6)
    assert dpo["train"]["nll_only"]["preference_term"] is False and dpo["train"]["dpo"]["preference_term"] is True
    assert dpo["budget"]["reason"]  # why the sweep chose its setting
    sweep = {row["setting"]: row for row in dpo["sweep"]}
    assert set(sweep) == {"SFT", "lr0.0001_nll0", "lr0.0002_nll0"} and sum(row["chosen"] for row in sweep.values()) == 1
    assert (dpo_stage / "sweep" / "lr0.0002_nll0" / "final" / "config.json").exists()
    chosen = next(row["setting"] for row in dpo["sweep"] if row["chosen"])
    # plain DPO with the first seed at the chosen budget is the sweep's winning run, taken as it is
    assert dpo["runs"]["dpo"]["reused"] and dpo["runs"]["dpo"]["dir"] == str(dpo_stage / "sweep" / chosen)
    assert not any(dpo["runs"][label]["reused"] for label in ("hae", "dpo_seed1", "hae_seed1"))
    assert not (dpo_stage / "dpo").exists() and (dpo_stage / "dpo_seed1" / "final" / "config.json").exists()
    for variant in ("dpo", "hae"):
        train = dpo["train"][variant]
        assert train["global_step"] == 4 and train["hae_variant"] == variant and train["reference_model"] == dpo["sft_model"]
        on = {"dpo": 0.0, "hae": 1.0}[variant]  # the recipe's γ (HAEDPOConfig defaults) and the ones in effect
        assert train["gamma"] == {"configured": {"st": 1.0, "h": 1.0}, "effective": {"st": on, "h": on}}
        assert dpo["runs"][variant]["seconds"] > 0 and dpo["final_rewards"][variant]["rewards/accuracies"] is not None
        run_dir = Path(dpo["runs"][variant]["dir"])
        assert (run_dir / "final" / "config.json").exists() and dpo["runs"][variant]["model"].startswith(str(run_dir))
        # one process without an accelerate config: the module itself, with the launcher's environment
        first = (run_dir / "train.log").read_text().splitlines()[0]
        assert "OMP_NUM_THREADS=" in first and f"-m editcaption.train.hae_dpo --config {run_dir}" in first
    assert dpo["final_rewards"]["dpo"]["hae/margin_mean"] == 0 and dpo["final_rewards"]["hae"]["hae/margin_mean"] > 0
    assert dpo["margins"]["n"] == counts["preference_rows"] and dpo["budget"]["learning_rate"] in (1e-4, 2e-4)
    assert dpo["train"]["hae_seed1"]["config"]["learning_rate"] == dpo["budget"]["learning_rate"]  # every run at the chosen budget
    rates = {(r["model"], r["subset"], r["measure"]) for r in dpo["validation_rates"]}
    assert {(m, s, "p0") for m in ("SFT", "dpo", "hae") for s in (*MODES, "all")} <= rates
    assert {(c["a"], c["b"]) for c in dpo["validation_comparisons"]} == {
        ("SFT", "dpo"), ("SFT", "hae"), ("dpo", "hae"), ("SFT", "nll_only"), ("nll_only", "dpo"), ("dpo", "const"),
        ("const", "hae")}
    table2 = {(r["model"], r["subset"]) for r in dpo["validation_table2"]}
    assert {(m, "all") for m in ("SFT", "dpo", "hae", "const", "nll_only")} <= table2
    assert "**dpo vs SFT**" in dpo["conclusion"] and "log p(chosen)" in dpo["conclusion"]
    for figure in ("sweep", "margin_distributions", "margin_terms", "hardness", "training_curves", "logged_margins",
                   "validation_rates"):
        assert (dpo_stage / f"{figure}.png").exists(), figure
