"""eval.targeted and eval.stats.paired_rates: per-mode subsets, error rates, McNemar, seeds; eval.table2: the paper's
table 2 measures (hierarchical severity, multi-clause, unsupported, words); train.experiment's parameter parsing
and conclusion."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from editcaption.data import construct
from editcaption.world.synthetic import generate_pairs
from editcaption.eval import stats, summary, table2, targeted
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
    no_sweep = "the recipe's budget (no sweep)"
    assert kept.best == {"learning_rate": 1e-4, "chosen_nll_weight": 1.0, "reason": no_sweep} and kept.table.empty
    assert experiment.sweep_budget([], [], {}, {}, "/x", sft_model="x").best == {  # HAEDPOConfig's defaults
        "learning_rate": 1e-6, "chosen_nll_weight": 0.0, "reason": no_sweep}
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


# Table 2 (issue 26): the rule judge on hand-written answers to one colour change, as two "models".
def _answers(obj: str, after: str, wrong: str) -> list[tuple[str, str, bool, bool]]:
    """(answer, its hierarchical class, multi-clause, unsupported clause)."""
    return [(f"Make the {obj} {after}.", "correct", False, False),
            (f"Make the {obj} {after}, then make the whole image darker.", "p1", True, True),  # a tone change it lacks
            (f"Make the {obj} {after}. Make the {obj} {after}.", "p2", True, False),  # a repeated clause
            (f"Make the {obj} {after}, and also add a red star.", "p0", True, True),  # an added object it lacks
            ("Make it look better.", "p0", False, False),  # P0 omission and P2 vague wording: P0 only
            (f"Make the {obj} {wrong}.", "p0", False, False),  # the value stated wrongly
            (f"Make the {obj} {after} and keep everything else unchanged.", "correct", False, False),
            (f"Make the {obj} {after}, then make it look nicer.", "p2", True, False)]  # vague wording


@pytest.fixture(scope="module")
def judged():
    pairs = generate_pairs(3, seed=3, size=96, progress=False)
    change = pairs[2]["changes"][0]
    assert change["op"] == "color" and len(pairs[2]["changes"]) == 1
    wrong = next(c for c in ("blue", "green", "purple") if c not in (change["before"], change["after"]))
    answers = _answers(change["object"], change["after"], wrong)
    eight = pairs.select([2] * len(answers)).map(lambda row, k: {"id": f"q{k}"}, with_indices=True)
    base = summary.score_instructions(eight, [a[0] for a in answers])
    sft = summary.score_instructions(eight, [f"Make the {change['object']} {change['after']}."] * len(answers))
    return answers, {"base": {"detail": base}, "SFT": {"detail": sft}}


def test_measures_follow_the_papers_hierarchy_and_flag_clauses(judged):
    answers, scores = judged
    frame = scores["base"]["detail"]
    flags = targeted.error_flags(frame, "detail", targeted.MEASURES)
    for measure in ("correct", "p0", "p1", "p2"):
        assert flags[measure].tolist() == [a[1] == measure for a in answers], measure
    assert sum(flags[m].astype(int) for m in ("correct", "p0", "p1", "p2")).eq(1).all()
    vague = frame.iloc[4]  # "Make it look better.": a P0 omission and a P2 vague word, counted as P0 only
    assert vague["p0"] and vague["any_vague"] and vague["any_omitted"] and not flags["p2"].iloc[4]
    assert flags["multi_clause"].tolist() == [a[2] for a in answers]
    assert flags["unsupported"].tolist() == [a[3] for a in answers]
    assert frame["any_unsupported"].tolist() == [a[3] for a in answers] and not frame["p0_unsupported"].iloc[1]  # P1
    words = targeted.measure_values(frame, "detail", "words")
    assert words.iloc[4] == 4.0 and words.iloc[2] == 2 * words.iloc[0]


def test_flags_on_hand_written_frames_and_unknown_measures():
    frame = pd.DataFrame({"id": list("abcd"), "p0": [False] * 4, "has_detail": [False] * 4, "severity": [""] * 4,
                          "any_unsupported": [False, True, False, False],
                          "instruction": ["Move the star left, then flip the image.", "Make the cat blue.",
                                          "Move the star left and keep the rest.", None]})
    assert targeted.measure_flag(frame, "detail", "multi_clause").tolist() == [True, False, False, False]
    assert targeted.measure_flag(frame, "detail", "unsupported").tolist() == [False, True, False, False]
    assert targeted.measure_values(frame, "detail", "words").tolist() == [8.0, 4.0, 8.0, 0.0]
    with pytest.raises(ValueError, match="unknown measure.*'p3'.*allowed are p0, mode, correct, p1, p2, multi_clause"):
        targeted.error_rates({"m": {"detail": frame}}, measures=["p0", "p3"])
    with pytest.raises(ValueError, match="allowed are .*unsupported$"):
        targeted.paired_comparisons({"m": {"detail": frame}}, [("m", "m")], measures=["words"])
    with pytest.raises(KeyError, match="needs the per-pair column 'severity'"):
        targeted.measure_flag(frame.drop(columns="severity"), "detail", "p1")
    assert targeted.seeded_rates({"m": {"detail": frame}}, {"m": ("m", 0)}, measure="words", n_boot=50)["rate"].item() == 5.0


def test_new_measures_leave_p0_and_mode_rows_unchanged_and_compare_pair_by_pair(judged):
    _, scores = judged
    pooled = targeted.with_pooled(scores)
    default = targeted.error_rates(pooled, seed=0)
    assert set(default["measure"]) == {"p0", "mode"} and len(default) == 2 * 2 * 2
    every = targeted.error_rates(pooled, seed=0, measures=targeted.MEASURES)
    pd.testing.assert_frame_equal(every[every["measure"].isin(["p0", "mode"])].reset_index(drop=True), default)
    rate = every.set_index(["model", "subset", "measure"])["rate"]
    assert rate["base", "detail", "correct"] == 0.25 and rate["base", "all", "unsupported"] == 0.25
    assert rate["base", "detail", "p0"] == 0.375 and rate["SFT", "detail", "correct"] == 1.0
    pairs = targeted.comparisons_for(list(pooled))
    old = targeted.paired_comparisons(pooled, pairs)
    new = targeted.paired_comparisons(pooled, pairs, measures=targeted.MEASURES)
    pd.testing.assert_frame_equal(new[new["measure"].isin(["p0", "mode"])].reset_index(drop=True), old)
    row = new[(new.subset == "detail") & (new.measure == "correct")].iloc[0]
    assert (row["rate_a"], row["rate_b"], row["diff"], row["only_a"], row["only_b"]) == (0.25, 1.0, 0.75, 0, 6)
    assert row["p_value"] == pytest.approx(2 * 0.5 ** 6) and row["low"] > 0 and row["min_detectable_diff"] > 0
    assert targeted.plain_words(new) == targeted.plain_words(old)
    assert "share of correct answers 100.0% vs 25.0%" in targeted.plain_words(new, measure="correct")[0]
    row = new[(new.subset == "detail") & (new.measure == "multi_clause")].iloc[0]
    assert row["diff"] == -0.5 and row["test"].startswith("McNemar")
    assert targeted.pooled_rate(scores["base"], measure="p2") == pytest.approx({"n": 8, "p2": 0.25, "low": 0.0,
                                                                                "high": pytest.approx(0.5, abs=0.13)})


def test_table2_and_table4_report_every_measure_with_intervals(judged):
    _, scores = judged
    table = table2.table2(scores, seed=0, n_boot=200)
    assert list(table.columns[:3]) == ["model", "subset", "n"] and len(table) == 4  # 2 models x (detail, all)
    assert [c for c in table.columns[3:] if " " not in c] == ["Correct", "P0", "P1", "P2", "Multi-clause",
                                                             "Unsupported", "Words"]
    assert (table[["Correct", "P0", "P1", "P2"]].sum(axis=1) == 1).all()
    base = table[(table.model == "base") & (table.subset == "all")].iloc[0]
    assert (base["Correct"], base["P0"], base["P1"], base["P2"], base["Multi-clause"], base["Unsupported"]) == (
        0.25, 0.375, 0.125, 0.25, 0.5, 0.25)
    for label in table2.LABELS.values():
        assert (table[f"{label} low"] <= table[label]).all() and (table[label] <= table[f"{label} high"]).all()
    assert table2.cells(table).loc[0, "Words"].count("[") == 1
    words = targeted.answer_words(scores, n_boot=200).set_index(["model", "subset"])
    assert words.loc[("SFT", "detail"), "words"] == 5.0 and words.loc[("SFT", "detail"), "low"] == 5.0
    assert words.loc[("base", "detail"), "words"] == table[(table.model == "base") & (table.subset == "detail")]["Words"].item()
    seeded = table2.table4(scores, {"base": ("x", 0), "SFT": ("x", 1)}, seed=0, n_boot=200)
    assert list(seeded.columns[:4]) == ["variant", "subset", "seeds", "n_per_seed"] and len(seeded) == 2
    assert seeded["Correct"].tolist() == [0.625, 0.625] and (seeded["Correct low"] <= 0.625).all()
    long = table2.table4_long(scores, {"base": ("x", 0), "SFT": ("x", 1)}, n_boot=100)
    assert long["measure"].tolist()[:7] == list(table2.MEASURES) and long.loc[0, "per_seed"] == [0.25, 1.0]
    tests = table2.comparisons(scores, [("base", "SFT")], n_boot=200)
    assert set(tests["measure"]) == {*table2.RATE_MEASURES, "words"} and set(tests["subset"]) == {"detail", "all"}
    words = tests[(tests.measure == "words") & (tests.subset == "detail")].iloc[0]
    assert words["rate_b"] == 5.0 and words["diff"] == pytest.approx(5.0 - words["rate_a"]) and 0 <= words["p_value"] <= 1
