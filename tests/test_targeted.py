"""eval.targeted and eval.stats.paired_rates: per-mode subsets, error rates, McNemar, seeds; train.experiment's
parameter parsing and conclusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from editcaption.data import construct
from editcaption.world.synthetic import generate_pairs
from editcaption.eval import stats, targeted
from editcaption.train import experiment


def test_paired_rates_mcnemar_interval_and_detectable_difference():
    a = np.array([True] * 12 + [False] * 88)  # model a fails 12 items that b gets right, nothing else differs
    b = np.zeros(100, dtype=bool)
    test = stats.paired_rates(a, b, seed=0)
    assert test["rate_a"] == 0.12 and test["rate_b"] == 0 and test["diff"] == pytest.approx(-0.12)
    assert test["p_value"] == pytest.approx(2 * 0.5 ** 12)  # exact binomial on the 12 discordant items
    assert test["high"] < 0 and test["only_a"] == 12 and test["only_b"] == 0
    assert test["min_detectable_diff"] == pytest.approx((1.959964 + 0.841621) * np.sqrt(0.12 / 100), rel=1e-5)
    assert stats.paired_rates(a, a)["p_value"] == 1.0
    with pytest.raises(ValueError, match="equal, non-empty"):
        stats.paired_rates(a, b[:5])


def test_subsets_hold_their_modes_edit_types_and_share_nothing():
    pool = generate_pairs(20, seed=1, size=96, progress=False)
    validation, skipped = targeted.draw_subsets(6, split="validation", seed=1, exclude={"pool": pool}, image_size=96,
                                                edit_types="add,color,move,zoom", max_objects=2)
    test, _ = targeted.draw_subsets(8, split="test", seed=1, exclude={"pool": pool, **validation}, image_size=96,
                                    edit_types="add,color,move,zoom", max_objects=2)
    assert skipped == {} and {m: len(p) for m, p in test.items()} == {"orientation": 8, "viewpoint": 8, "detail": 8}
    assert set(test["orientation"]["edit_type"]) == {"move"} and set(test["viewpoint"]["edit_type"]) == {"zoom"}
    assert set(test["detail"]["edit_type"]) <= {"add", "color"}
    construct.check_no_overlap({"pool": pool, **{f"v {m}": p for m, p in validation.items()},
                                **{f"t {m}": p for m, p in test.items()}})
    _, skipped = targeted.draw_subsets(2, split="test", seed=1, exclude={}, image_size=96, edit_types="add,color")
    assert set(skipped) == {"orientation", "viewpoint"}
    none = targeted.draw_splits(5, 5, pairs_source="hq-edit", seed=0, exclude={}, out_dir="/nonexistent")
    assert none["n"] == {} and set(none["skipped"]) == set(targeted.MODES)


def _scores(p0, mode_errors, ids=None):
    ids = ids or [f"p{i}" for i in range(len(p0))]
    return pd.DataFrame({"id": ids, "p0": p0, "has_orientation": mode_errors})


def test_error_rates_pooling_and_seeded_table():
    scores = {"SFT": {"orientation": _scores([True, True, False, False], [True, False, False, False])},
              "dpo": {"orientation": _scores([True, False, False, False], [False, False, False, False])},
              "dpo_seed1": {"orientation": _scores([False, False, False, False], [False, False, False, False])}}
    pooled = targeted.with_pooled(scores)
    rates = targeted.error_rates(pooled)
    row = rates[(rates.model == "SFT") & (rates.subset == "all") & (rates.measure == "mode")].iloc[0]
    assert row["rate"] == 0.25 and row["n"] == 4
    comparisons = targeted.paired_comparisons(pooled, targeted.comparisons_for(list(pooled)))
    assert set(zip(comparisons.a, comparisons.b)) == {("SFT", "dpo")}
    assert comparisons.loc[(comparisons.subset == "orientation") & (comparisons.measure == "p0"), "diff"].item() == -0.25
    seeded = targeted.seeded_rates(scores, {"dpo": ("dpo", 0), "dpo_seed1": ("dpo", 1)}, n_boot=200)
    p0 = seeded[(seeded.subset == "orientation") & (seeded.measure == "p0")].iloc[0]
    assert p0["seeds"] == 2 and p0["rate"] == pytest.approx(0.125) and p0["per_seed"] == [0.25, 0.0]
    assert 0 <= p0["low"] <= p0["rate"] <= p0["high"] <= 0.5
    with pytest.raises(ValueError, match="different pairs"):
        targeted.paired_comparisons({"SFT": scores["SFT"], "dpo": {"orientation": _scores([True] * 4, [True] * 4, list("wxyz"))}},
                                    [("SFT", "dpo")])
    lines = targeted.plain_words(comparisons)
    assert any("not detectably different" in line for line in lines)


def test_experiment_parameters_and_conclusion():
    assert experiment.parse_numbers(" 1e-5, 3e-5 ,", "x") == [1e-5, 3e-5]
    with pytest.raises(ValueError, match="sweep_learning_rates: 'fast' is not a number"):
        experiment.sweep_budget("1e-5,fast", "", {}, {}, "/nonexistent", sft_model="x")
    assert experiment.parse_seeds("", 3) == [3] and experiment.parse_seeds("0, 1,2", 9) == [0, 1, 2]
    for bad in ("0,0", "0.5"):
        with pytest.raises(ValueError, match="distinct integers"):
            experiment.parse_seeds(bad, 0)
    assert experiment.run_label("hae", 0, 0) == "hae" and experiment.run_label("hae", 2, 0) == "hae_seed2"
    comparisons = pd.DataFrame([
        {"a": "SFT", "b": "dpo", "subset": "orientation", "measure": "p0", "rate_a": 0.6, "rate_b": 0.45,
         "diff": -0.15, "low": -0.2, "high": -0.1},
        {"a": "SFT", "b": "dpo", "subset": "detail", "measure": "p0", "rate_a": 0.4, "rate_b": 0.5,
         "diff": 0.1, "low": 0.03, "high": 0.17}])
    history = [{"step": 10, "rewards/accuracies": 0.5, "logps/chosen": -10.0, "logps/rejected": -8.0},
               {"step": 20, "rewards/accuracies": 0.9, "logps/chosen": -14.0, "logps/rejected": -30.0}]
    text = experiment.conclusion(comparisons, {"dpo": {"metrics": {"log_history": history}}})
    assert "P0 error rate lower on orientation, higher on detail" in text
    assert "log p(chosen) fell -10.0 -> -14.0" in text and "reward accuracy 0.50 -> 0.90" in text
    demo = {"learning_rate": 1e-4, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 1.0]}  # demo's recipe
    kept = experiment.sweep_budget("", "", demo, {}, "/nonexistent", sft_model="x")
    assert kept.best == {"learning_rate": 1e-4, "chosen_nll_weight": 1.0} and kept.table.empty
    assert experiment.sweep_budget([], [], {}, {}, "/x", sft_model="x").best == {  # HAEDPOConfig's defaults
        "learning_rate": 1e-6, "chosen_nll_weight": 0.0}
    with pytest.raises(ValueError, match="targeted validation subsets"):
        experiment.sweep_budget([1e-5], [], demo, {}, "/nonexistent", sft_model="x")
    assert experiment.budget_fields({"learning_rate": 3e-5, "chosen_nll_weight": 0.5}) == {
        "learning_rate": 3e-5, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, 0.5]}
    assert experiment.nll_fields(0.0) == {"loss_type": ["sigmoid"], "loss_weights": None}
    assert experiment.chosen_nll_weight({"loss_type": "sigmoid"}) == 0.0


def test_train_variants_takes_a_sweep_run_with_the_same_parameters(monkeypatch, tmp_path):
    """Plain DPO with the first seed at the chosen budget is the sweep's winning run: not launched again.
    A run whose parameters differ in any key (another seed, another variant, another rate) is trained."""
    launched = []

    def fake_run(params, run_dir, **_):
        launched.append((params["hae_variant"], params["seed"], params["learning_rate"]))
        return {"seconds": 1.0, "metrics": {"global_step": 4}, "params": dict(params), "dir": str(run_dir),
                "model": str(run_dir / "final")}

    monkeypatch.setattr(experiment, "train_run", fake_run)
    base = {"seed": 0, "learning_rate": 5e-6}  # the recipe's rate: the budget replaces it
    swept = [fake_run({**base, **experiment.budget_fields({"learning_rate": lr, "chosen_nll_weight": 0.0}),
                       "hae_variant": "dpo"}, tmp_path / f"sweep{lr:g}") for lr in (1e-4, 2e-4)]
    launched.clear()
    runs = experiment.train_variants(["dpo", "hae"], [0, 1], base, tmp_path, done=swept,
                                     budget={"learning_rate": 1e-4, "chosen_nll_weight": 0.0})
    assert launched == [("hae", 0, 1e-4), ("dpo", 1, 1e-4), ("hae", 1, 1e-4)]
    assert runs["dpo"]["reused"] and runs["dpo"]["dir"] == str(tmp_path / "sweep0.0001")
    assert [label for label, run in runs.items() if run["reused"]] == ["dpo"]
    summary = experiment.runs_summary(runs)
    assert summary["dpo"]["reused"] and summary["hae_seed1"]["dir"] == str(tmp_path / "hae_seed1")
