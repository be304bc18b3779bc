"""Preference data (notebook 03): tagging, balancing, the correction round trip, the written set, disjointness."""
from __future__ import annotations

import csv

import datasets
import pytest
import torch

from editcaption import annotation
from editcaption.data import construct, mining, preference
from editcaption.world.rule_judge import RuleJudge
from editcaption.world.synthetic import generate_pairs
from editcaption.records import PREFERENCE_FEATURES, make_change
from editcaption.data.preference_rows import load_preferences
from editcaption.train import experiment, margin
from editcaption.train.margin import hae_margin

MOVE_LEFT = [make_change("move", "red star", "position", "", "", "left")]


def test_tagging_keeps_mode_errors_and_counts_the_rest():
    changes = [MOVE_LEFT] * 6 + [[make_change("color", "star", "color", "red", "blue")]]
    texts = ["Move the red star to the left.", "Move the red star to the right.", ".", "",
             "Add a hat to the car.", "Move the red star to the left and add a hat.", "Change the color of the star."]
    ids = list("abcdefg")
    tagging = preference.tag_candidates({"id": ids, "changes": changes}, dict(zip(ids, texts)))
    # a fabricated addition ("and add a hat") is a detail error (table 6 row 2): mined like the others
    assert tagging.rejected == {"b": ("orientation", "P0"), "f": ("detail", "P0"), "g": ("detail", "P0")}
    assert (tagging.clean, tagging.off_topic, tagging.empty, tagging.other) == (["a"], ["c", "e"], ["d"], [])
    summary = tagging.summary()
    assert summary["n_pairs"] == 7 and summary["n_rejected"] == 3 and summary["n_other_dropped"] == 0
    assert tagging.texts == {"b": texts[1], "f": texts[5], "g": texts[6]} and set(tagging.origin.values()) == {"greedy"}


def test_balance_largest_exact_mix_and_shortfall():
    labels = {f"o{i}": "orientation" for i in range(10)} | {f"v{i}": "viewpoint" for i in range(3)} | {
        f"d{i}": "detail" for i in range(20)}
    largest = preference.balance(labels, preference.PAPER_MIX, seed=1)
    # N = min(10/.342, 3/.315, 20/.343) = 9 -> 3.078, 2.835, 3.087 -> largest remainder gives viewpoint the spare row
    assert largest.target == {"orientation": 3, "viewpoint": 3, "detail": 3} and sum(largest.shortfall.values()) == 0
    assert len(largest.selected) == 9 and largest.selected == sorted(largest.selected)
    assert largest.selected == preference.balance(labels, preference.PAPER_MIX, seed=1).selected
    assert all(labels[pid] == m for m in preference.MODES for pid in largest.selected if pid[0] == m[0])

    aimed = preference.balance(labels, {"orientation": 34.2, "viewpoint": 31.5, "detail": 34.3}, n_total=20, seed=1)
    assert aimed.target == {"orientation": 7, "viewpoint": 6, "detail": 7}  # 6.84, 6.30, 6.86
    assert aimed.taken == {"orientation": 7, "viewpoint": 3, "detail": 7}
    assert aimed.shortfall == {"orientation": 0, "viewpoint": 3, "detail": 0}
    assert aimed.achieved_mix() == pytest.approx({"orientation": 7 / 17, "viewpoint": 3 / 17, "detail": 7 / 17})
    for bad in ({"orientation": -1, "viewpoint": 1}, {"other": 1.0}, {"detail": 0.0}):
        with pytest.raises(ValueError, match="mix"):
            preference.balance(labels, bad)


def test_balance_over_the_modes_that_exist_never_pads():
    labels = {f"v{i}": "viewpoint" for i in range(30)} | {f"d{i}": "detail" for i in range(40)} | {"o0": "orientation"}
    strict = preference.balance(labels, preference.PAPER_MIX, seed=0)  # one orientation row limits the exact mix
    assert len(strict.selected) == 2
    existing = preference.balance(labels, preference.PAPER_MIX, seed=0, min_mode_rows=5)
    # N = min(30/.315, 40/.343) = 95 -> quotas 32, 30, 33: orientation keeps its one row, short by 31; nothing padded
    assert existing.target == {"orientation": 32, "viewpoint": 30, "detail": 33}
    assert existing.taken == {"orientation": 1, "viewpoint": 30, "detail": 33}
    assert existing.shortfall == {"orientation": 31, "viewpoint": 0, "detail": 0} and len(existing.selected) == 64
    with pytest.raises(ValueError, match="no failure mode"):
        preference.balance({"o0": "orientation"}, preference.PAPER_MIX, min_mode_rows=5)


@pytest.fixture(scope="module")
def corrected(tmp_path_factory):
    """24 fresh pairs with SIMULATED-teacher candidates, tagged, sent through the correction sheet."""
    root = tmp_path_factory.mktemp("pref")
    test = generate_pairs(4, seed=5, progress=False)
    pairs, _ = preference.candidate_pairs(24, seed=5, exclude={"test": test})
    written, _ = preference.write_candidates("simulated-teacher", pairs, seed=5)
    candidates = {pid: texts[0] for pid, texts in written.items()}
    tagging = preference.tag_candidates(pairs, candidates)
    sheet = preference.export_correction_sheet(pairs, candidates, list(tagging.rejected), root / "correction")
    chosen = preference.simulated_chosen(pairs, tagging)
    filled = preference.filled_correction_sheet(sheet, truth=preference.correction_truth(chosen, tagging),
                                                residual_error_rate=0.0, seed=5)
    corrections = preference.import_corrections(sheet, filled, store_dir=root / "annotations")
    return root, pairs, candidates, tagging, sheet, corrections


def test_correction_round_trip_carries_corrections_and_judge_labels(corrected):
    root, pairs, candidates, tagging, sheet, corrections = corrected
    assert len(tagging.rejected) >= 6
    chosen = preference.simulated_chosen(pairs, tagging)
    changes = dict(zip(pairs["id"], pairs["changes"]))
    assert set(corrections.rows) == set(tagging.rejected) and corrections.annotator == "simulated"
    for pid, row in corrections.rows.items():
        assert row["corrected_instruction"] == chosen[pid].text != candidates[pid] == row["rejected_instruction"]
        assert (row["error_type"], row["severity"]) == tagging.rejected[pid]
        assert chosen[pid].source == "correction" and not RuleJudge().score(changes[pid], chosen[pid].text)["errors"]
    provenance = preference.chosen_provenance(corrections, tagging, chosen)
    assert set(provenance["chosen_source"]) == {"correction"} and (provenance["edit_distance"] > 0).all()
    assert preference.distance_summary(provenance)["all"]["n"] == len(corrections.rows)
    # the same sheet is reused; a sheet for other rows is refused
    assert preference.export_correction_sheet(pairs, candidates, list(tagging.rejected), sheet) == sheet
    with pytest.raises(Exception, match="other candidates"):
        preference.export_correction_sheet(pairs, candidates, list(tagging.rejected)[:2], sheet)


def test_a_human_file_with_bad_rows_is_imported_row_by_row(corrected, tmp_path):
    root, pairs, candidates, tagging, sheet, _ = corrected
    rows = annotation.read_sheet(sheet / "sheet.jsonl")
    first, second = rows[0], rows[1]
    first.update(corrected_instruction="Turn the whole scene upside down.", error_type="Viewpoint", severity="P1")
    second.update(corrected_instruction=second["rejected_instruction"], error_type="detail", severity="P0")
    path = tmp_path / "human.csv"
    with open(path, "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(first))
        writer.writeheader()
        writer.writerows([first, second])
    filled = preference.filled_correction_sheet(sheet, str(path), truth={}, residual_error_rate=0.0, seed=0)
    human = preference.import_corrections(sheet, filled, store_dir=tmp_path / "annotations")
    assert human.annotator == "human" and human.n_rejected == 1 and "equals the rejected" in human.problems[0]
    assert human.labels() == {first["id"]: "viewpoint"} and len(human.missing) == len(rows) - 1
    with pytest.raises(Exception, match="no such file"):
        preference.filled_correction_sheet(sheet, str(tmp_path / "nope.csv"), truth={}, residual_error_rate=0, seed=0)


def test_residual_rate_changes_labels(corrected):
    _, pairs, _, tagging, sheet, _ = corrected
    truth = preference.correction_truth(preference.simulated_chosen(pairs, tagging), tagging)
    rows = annotation.simulated_annotator("correction", annotation.read_sheet(sheet / "sheet.jsonl"), truth=truth,
                                          residual_error_rate=1.0, seed=0)
    assert all((r["error_type"], r["severity"]) != truth[r["id"]][1:] for r in rows)


def test_written_set_loads_with_load_preferences_and_is_disjoint(corrected, tmp_path):
    _, pairs, _, _, _, corrections = corrected
    balanced = preference.balance(corrections.labels(), preference.PAPER_MIX, seed=0)
    prefs = preference.build_preference_set(pairs, corrections, balanced.selected)
    assert prefs.features == PREFERENCE_FEATURES and sorted(prefs["id"]) == balanced.selected
    folder = preference.save_preference_set(prefs, tmp_path / "preferences")
    trl_rows, skipped = load_preferences(folder)
    assert len(trl_rows) == len(prefs) and not skipped
    parquet = datasets.Dataset.from_parquet(str(tmp_path / "preferences.parquet"))
    assert parquet["id"] == prefs["id"] and parquet["rejected"] == prefs["rejected"]
    table = preference.mode_severity_counts(prefs)
    assert int(table.values.sum()) == len(prefs) and list(table.index) == list(preference.MODES)
    assert len(preference.preference_example_ids(prefs, 1)) == sum(1 for m in preference.MODES if table.loc[m].sum())
    with pytest.raises(ValueError, match="no preference rows"):
        preference.build_preference_set(pairs, corrections, [])


def test_candidate_pool_skips_ids_and_images_of_other_splits():
    clash = generate_pairs(3, seed=7 + preference.PREFERENCE_SEED_OFFSET, progress=False)  # the pool's first ids
    pool, left_out = preference.candidate_pairs(5, seed=7, exclude={"test": clash})
    assert left_out == 3 and set(pool["id"]).isdisjoint(clash["id"])
    assert pool["id"] == preference.candidate_pairs(5, seed=7, exclude={"test": clash})[0]["id"]
    construct.check_no_overlap({"pool": pool, "test": clash})


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from editcaption.models import build_tiny_model

    return str(build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0))


def test_sft_model_candidates_are_tagged_never_invented(tiny_model, tmp_path):
    pairs = generate_pairs(4, seed=3, progress=False)
    written, stats = preference.write_candidates("sft-model", pairs, sft_model=tiny_model, k=2, seed=1, batch_size=4,
                                                 max_new_tokens=6, cache_dir=tmp_path)
    assert all(len(texts) == 3 for texts in written.values()) and set(stats) == {"greedy", "samples"}
    tagging = preference.tagging_of(mining.mine(pairs, written))
    assert tagging.summary()["n_pairs"] == 4  # every pair is counted in exactly one bucket
    assert all(tagging.texts[pid].strip() in [t.strip() for t in written[pid]] for pid in tagging.rejected)
    with pytest.raises(ValueError, match="needs the SFT model"):
        preference.write_candidates("sft-model", pairs)
    with pytest.raises(ValueError, match="not one of"):
        preference.write_candidates("gpt", pairs)


def test_reference_margins_follow_eq3(corrected, tiny_model, tmp_path):
    _, pairs, _, _, _, corrections = corrected
    prefs = preference.build_preference_set(pairs, corrections, sorted(corrections.rows)[:4])
    folder = preference.save_preference_set(prefs, tmp_path / "preferences")
    margins = margin.reference_margins(tiny_model, folder, gamma_st=2.0, gamma_h=0.5, tau=0.5, hardness_logp="mean", limit=3)
    assert len(margins) == 3 and (margins["ref_logp_chosen"] < 0).all()
    m, st, h = hae_margin(list(margins["severity"]), list(margins["error_type"]),
                          torch.tensor(margins["ref_logp_rejected"]), torch.tensor(margins["ref_logp_chosen"]),
                          gamma_st=2.0, gamma_h=0.5, tau=0.5)
    assert margins["margin"].tolist() == pytest.approx(m.tolist())
    assert margins["margin"].tolist() == pytest.approx((2.0 * margins["st_term"] + 0.5 * margins["h_term"]).tolist())


def test_variants_and_rewards():
    assert experiment.parse_variants(" dpo, hae ") == ["dpo", "hae"]
    for bad in ("", "dpo,dpo", "dpo,ipo"):
        with pytest.raises(ValueError, match="hae_variants"):
            experiment.parse_variants(bad)
    history = [{"step": 1, "rewards/margins": 0.1, "loss": 0.7}, {"step": 2, "rewards/margins": 0.3}, {"train_loss": 1}]
    summary = experiment.reward_summary(history)
    assert summary["rewards/margins"] == 0.3 and summary["loss"] == 0.7 and summary["rewards/accuracies"] is None
