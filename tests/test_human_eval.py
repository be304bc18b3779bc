"""Human evaluation: the hierarchical rule, blinded export and key, validated imports, kappas, table 2."""
import csv
import json
import random

import numpy as np
import pandas as pd
import pytest

from editcaption import annotation
from editcaption.annotation import CHECKLIST, SheetImportError
from editcaption.data import teacher
from editcaption.world import synthetic
from editcaption.eval import human
from editcaption.reporting import eval_tables
from editcaption.eval.human import Issue
from editcaption.world.rule_judge import RuleJudge
from editcaption.records import RecordError, make_change

MODELS = ("captioner-alpha", "captioner-beta", "captioner-gamma")


@pytest.fixture(scope="module")
def pairs():
    return synthetic.generate_pairs(6, seed=1, size=64, progress=False)


@pytest.fixture(scope="module")
def instructions(pairs):
    rates = {"captioner-alpha": {m: 0.0 for m in teacher.MODES}, "captioner-beta": teacher.DEFAULT_RATES,
             "captioner-gamma": {m: 1.0 for m in teacher.MODES}}
    return {model: {row["id"]: teacher.simulate_caption(row["changes"], rates[model], random.Random(row["id"])).text
                    for row in pairs.select_columns(["id", "changes"]).to_list()} for model in MODELS}


@pytest.fixture
def export(tmp_path, pairs, instructions):
    return human.export_blinded(pairs, instructions, tmp_path / "export", seed=7)


def _filled(export, label_of, path):
    """Fill the exported sheet: label_of(model) -> label; returns the filled CSV's path."""
    key = human.read_key(export.key_file)
    rows = annotation.read_sheet(export.sheet_dir / "sheet.jsonl")
    for row in rows:
        row["label"] = label_of(key[(row["id"], row["model"])])
    return annotation.write_sheet("evaluation", rows, path)


# ------------------------------------------------------------------------------------- the checklist

def test_guide_covers_table_6_exactly():
    assert set(human.GUIDE) == {(item, level) for item, (_, levels) in CHECKLIST.items() for level in levels}
    table = human.checklist_table()
    assert len(table) == 11 and set(table["item"]) == set(range(1, 9))


@pytest.mark.parametrize("issues, label, considered", [
    ([], "correct", ()),
    ([(7, "P2")], "P2", ((7, "P2"),)),
    ([(7, "P2"), (5, "P1"), (6, "P1")], "P1", ((5, "P1"), (6, "P1"))),
    ([(7, "P2"), (5, "P1"), (4, "P0"), (2, "P0")], "P0", ((2, "P0"), (4, "P0"))),  # a P0 ends the item
    ([(3, "P1"), (3, "P1")], "P1", ((3, "P1"),)),
])
def test_hierarchical_rule(issues, label, considered):
    verdict = human.label_from_issues(issues)
    assert verdict.label == label and verdict.considered == tuple(Issue(*i) for i in considered)
    assert verdict.checklist_id == (str(considered[0][0]) if considered else "")


@pytest.mark.parametrize("issue, message", [((9, "P0"), "not in table 6"), ((4, "P1"), "filed under P0, not 'P1'"),
                                            ((7, "P0"), "filed under P2")])
def test_hierarchical_rule_refuses_issues_outside_the_checklist(issue, message):
    with pytest.raises(ValueError, match=message):
        human.label_from_issues([issue])


def test_judge_errors_map_to_checklist_items():
    changes = [make_change("move", "red circle", "position", "", "", "left", True),
               make_change("tone", "image", "brightness", "", "brighter", "up", False),
               make_change("text", "sign", "text", "SHOP", "OPEN", "", True)]
    judge = RuleJudge()
    reversed_move = judge.score(changes[:1], "Move the red circle to the right.")["errors"]
    assert human.issues_from_judge(reversed_move, changes[:1]) == [Issue(4, "P0")]
    errors = [{"type": "detail", "severity": "P1", "change_index": 1, "reason": "change tone image not described"},
              {"type": "detail", "severity": "P0", "change_index": 2, "reason": "change text sign: says SHAP"},
              {"type": "detail", "severity": "P0", "change_index": None, "reason": "change add hat not described"},
              {"type": "other", "severity": "P1", "change_index": None, "reason": "'bag red' edits an element"},
              {"type": "detail", "severity": "P2", "change_index": None, "reason": "vague wording: slightly"}]
    assert human.issues_from_judge(errors, changes) == [Issue(5, "P1"), Issue(1, "P0"), Issue(3, "P0"), Issue(2, "P1"),
                                                        Issue(7, "P2")]
    assert human.label_from_issues(human.issues_from_judge(errors, changes)).label == "P0"


# ------------------------------------------------------------------------------------------- blinding

def test_blinded_export_hides_models_and_keeps_the_key_beside_the_sheet(tmp_path, export, pairs, instructions):
    assert export.n_rows == len(pairs) * len(MODELS)
    assert export.key_file.parent == export.sheet_dir.parent and not list(export.sheet_dir.rglob("*key*"))
    for path in export.sheet_dir.rglob("*"):
        assert not any(m in path.name for m in MODELS)
        if path.suffix in (".csv", ".jsonl", ".json", ".xml"):
            text = path.read_text()
            assert not any(m in text for m in MODELS) and "captioner" not in text, path
    rows = annotation.read_sheet(export.sheet_dir / "sheet.csv")
    tasks = json.loads((export.sheet_dir / "labelstudio_tasks.json").read_text())
    assert [t["data"]["model"] for t in tasks] == [r["model"] for r in rows]
    assert len({r["model"] for r in rows}) == len(rows)  # one key per row: a model's rows share nothing
    # key round trip: every row un-blinds to its model and shows that model's instruction
    assert human.sheet_instructions(export) == instructions
    key = human.read_key(export.key_file)
    assert sorted(key.values()) == sorted(MODELS * len(pairs))
    # shuffled, not grouped by model or pair
    order = [key[(r["id"], r["model"])] for r in rows]
    assert order != sorted(order) and [r["id"] for r in rows] != sorted(r["id"] for r in rows)


def test_export_is_seeded_and_never_overwrites(tmp_path, export, pairs, instructions):
    again = human.export_blinded(pairs, instructions, tmp_path / "again", seed=7)
    other = human.export_blinded(pairs, instructions, tmp_path / "other", seed=8)
    assert (again.sheet_dir / "sheet.csv").read_bytes() == (export.sheet_dir / "sheet.csv").read_bytes()
    assert again.key_file.read_bytes() == export.key_file.read_bytes()
    assert other.key_file.read_bytes() != export.key_file.read_bytes()
    with pytest.raises(RecordError, match="blinding key is already here"):
        human.export_blinded(pairs, instructions, export.key_file.parent, seed=7)
    reused = human.open_export(export.key_file.parent, pairs, instructions)
    assert reused.key_file == export.key_file and reused.n_rows == export.n_rows
    changed = {**instructions, "captioner-alpha": {i: t + " Also add a hat." for i, t in instructions["captioner-alpha"].items()}}
    with pytest.raises(RecordError, match="differ from the exported sheet"):
        human.open_export(export.key_file.parent, pairs, changed)


def test_read_key_names_bad_rows(tmp_path):
    path = tmp_path / "blinding_key.csv"
    path.write_text("key,id,model\nk1,p1,a\nk1,p1,b\n")
    with pytest.raises(RecordError) as err:
        human.read_key(path)
    assert err.value.row == 3 and err.value.field == "key"


# ------------------------------------------------------------------------------------------- imports

def test_import_errors_name_file_row_and_field(tmp_path, export):
    path = _filled(export, lambda model: "correct", tmp_path / "alice.csv")
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["model"] = "kdeadbeef00"  # unknown key
    rows[1]["label"] = "P3"  # outside the checklist
    rows[3] = {**rows[2], "label": "P0"}  # a second label for one item
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with pytest.raises(SheetImportError) as err:
        human.import_annotations([("alice", path)], export.sheet_dir, tmp_path / "store")
    found = {(e.row, e.field) for e in err.value.errors}
    assert found == {(2, "model"), (3, "label"), (4, "id"), (5, "id")}
    assert all(e.file == path for e in err.value.errors)
    assert "unknown" in str(err.value) and "invalid choice 'P3'" in str(err.value) and "appears 2 times" in str(err.value)
    assert not (tmp_path / "store" / "evaluation").exists()  # nothing imported


def test_imports_append_and_refuse_a_second_label(tmp_path, export):
    store = tmp_path / "store"
    first = _filled(export, lambda model: "correct", tmp_path / "bob.csv")
    result = human.import_annotations([("bob", first)], export.sheet_dir, store)
    assert result[0].accepted == export.n_rows and result[0].stored.name == "import-0001.jsonl"
    stored = result[0].stored.read_bytes()
    assert human.import_annotations([("bob", first)], export.sheet_dir, store)[0].skipped_as_repeat
    second = _filled(export, lambda model: "P0", tmp_path / "bob-again.csv")
    with pytest.raises(SheetImportError) as err:
        human.import_annotations([("bob", second)], export.sheet_dir, store)
    assert len(err.value.errors) == export.n_rows and "already labelled" in str(err.value)
    assert err.value.errors[0].row == 2 and err.value.errors[0].field == "model"
    carol = human.import_annotations([("carol", second)], export.sheet_dir, store)[0]  # another person may
    assert carol.stored.name == "import-0002.jsonl" and result[0].stored.read_bytes() == stored
    labels = human.unblind(store, export.key_file, ["bob", "carol"])
    assert set(labels.groupby("annotator")["label"].agg(set).map(tuple)) == {("correct",), ("P0",)}


def test_parse_import_paths():
    assert human.parse_import_paths("alice=a/one.csv, b/two.json") == [("alice", human.Path("a/one.csv")),
                                                                      ("two", human.Path("b/two.json"))]
    with pytest.raises(ValueError, match="named for two files"):
        human.parse_import_paths("x/a.csv,y/a.csv")


def test_labelstudio_export_is_split_per_annotator(tmp_path, export):
    exports = []
    for name, label in (("u1", "correct"), ("u2", "P1")):
        rows = annotation.read_sheet(export.sheet_dir / "sheet.jsonl")
        for row in rows:
            row["label"] = label
        path = annotation.write_sheet("evaluation", rows, tmp_path / f"{name}.json")
        exports.append(json.loads(path.read_text()))
    merged = exports[0]
    for task, other in zip(merged, exports[1]):
        task["annotations"][0]["completed_by"] = 1
        task["annotations"].append({**other["annotations"][0], "completed_by": {"id": 2, "email": "u2@example.org"}})
    source = tmp_path / "project.json"
    source.write_text(json.dumps(merged))
    files = human.expand_labelstudio([("project", source)], tmp_path / "split")
    assert [name for name, _ in files] == ["project-1", "project-u2_example.org"]
    human.import_annotations(files, export.sheet_dir, tmp_path / "store")
    labels = human.unblind(tmp_path / "store", export.key_file, [name for name, _ in files])
    assert labels.groupby("annotator")["label"].agg(set).to_dict() == {"project-1": {"correct"},
                                                                       "project-u2_example.org": {"P1"}}
    single = tmp_path / "u1.json"
    assert human.expand_labelstudio([("u1", single)], tmp_path / "split") == [("u1", single)]
    merged[2]["annotations"].append({**merged[2]["annotations"][0]})
    source.write_text(json.dumps(merged))
    with pytest.raises(RecordError) as err:
        human.split_labelstudio_export(source, tmp_path / "split2")
    assert err.value.row == 3 and "twice" in str(err.value)


# ------------------------------------------------------------------------------------------ agreement

def test_cohen_kappa_textbook_example():
    # 50 items: both yes 20, A yes / B no 5, A no / B yes 10, both no 15 -> p_o 0.7, p_e 0.5, kappa 0.4
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert human.cohen_kappa(a, b) == pytest.approx(0.4)
    assert human.cohen_kappa(a, a) == pytest.approx(1.0)
    assert np.isnan(human.cohen_kappa(["x"] * 4, ["x"] * 4))
    with pytest.raises(ValueError):
        human.cohen_kappa(["a"], ["a", "b"])


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as worked in most references: 10 items, 14 raters, 5 categories -> kappa 0.210
    counts = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
              [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert human.fleiss_kappa(counts) == pytest.approx(0.2099, abs=1e-4)
    assert human.fleiss_kappa([[3, 0], [0, 3], [3, 0]]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same number"):
        human.fleiss_kappa([[2, 1], [1, 1]])


def _labels(table):
    """{annotator: [label per item]} over items i0.. of model m -> the long label frame."""
    return pd.DataFrame([{"id": f"i{k}", "model": "m", "annotator": name, "label": label}
                         for name, labels in table.items() for k, label in enumerate(labels)])


def test_agreement_uses_cohen_for_two_and_fleiss_for_more():
    a = ["correct", "P0", "P0", "P1", "correct", "P2"]
    b = ["correct", "P0", "P1", "P1", "correct", "correct"]
    two = human.agreement(_labels({"a": a, "b": b}), n_boot=50)
    assert two["method"] == "cohen" and two["kappa"] == pytest.approx(human.cohen_kappa(a, b))
    assert two["low"] <= two["kappa"] <= two["high"] and two["n_items"] == 6
    three = human.agreement(_labels({"a": a, "b": b, "c": a}), n_boot=50)
    counts = [[sum(x == label for x in item) for label in ("correct", "P0", "P1", "P2")] for item in zip(a, b, a)]
    assert three["method"] == "fleiss" and three["kappa"] == pytest.approx(human.fleiss_kappa(counts))
    assert three["pairwise_cohen"]["a | c"] == pytest.approx(1.0)
    matrix = human.pairwise_matrix(_labels({"a": a, "b": b}))
    assert matrix.loc["a", "b"] == matrix.loc["b", "a"] == pytest.approx(two["kappa"])
    table = eval_tables.agreement_table(three, {"a": 0.5})
    assert list(table.index) == ["all 3 (fleiss)", "a | b", "a | c", "b | c", "a | rule judge"]


# -------------------------------------------------------------------------------------------- table 2

def test_table2_on_a_hand_made_case():
    labels = pd.DataFrame(
        [{"id": f"i{k}", "model": "A", "annotator": "x", "label": lab} for k, lab in enumerate(["correct", "correct", "P0", "P1"])]
        + [{"id": f"i{k}", "model": "B", "annotator": "x", "label": lab} for k, lab in enumerate(["P0", "P0", "P0", "P2"])]
        + [{"id": "i0", "model": "B", "annotator": "y", "label": "correct"}])  # i0 of B: half P0, half correct
    rows = human.table2_rows(labels, judge="human-annotators", data="hand n=4", n_boot=200)
    values = rows.set_index(["model", "metric"])["value"]
    assert values["A"].to_dict() == {"Correct": 50.0, "P0": 25.0, "P1": 25.0, "P2": 0.0}
    assert values["B"].to_dict() == pytest.approx({"Correct": 12.5, "P0": 62.5, "P1": 0.0, "P2": 25.0})
    assert (rows["low"] <= rows["value"]).all() and (rows["value"] <= rows["high"]).all()
    assert rows.loc[(rows.model == "A") & (rows.metric == "P2"), ["low", "high"]].values.tolist() == [[0.0, 0.0]]
    assert set(rows["table"]) == {"table2"} and set(rows["judge"]) == {"human-annotators"}
    assert human.table2_dict(rows)["A"]["Correct"]["value"] == 50.0
    named = human.table2_rows(labels, judge="h", data="d", models=["B", "A"], names={"A": "model A"}, n_boot=10)
    assert list(dict.fromkeys(named["model"])) == ["B", "model A"]
    assert human.source_order(["sft", "gpt", "base", "hae"], ("base", "sft", "dpo", "hae")) == ["gpt", "base", "sft", "hae"]
    with pytest.raises(ValueError, match="not in"):
        human.table2_rows(labels.assign(label="P3"), judge="x", data="y")


# ------------------------------------------------------------------------------------ simulated people

def test_simulated_annotators_go_through_the_import_and_disagree_with_noise(tmp_path, export, pairs):
    verdicts = human.judge_verdicts(pairs, human.sheet_instructions(export))
    assert len(verdicts) == export.n_rows
    first = pairs[0]["id"]
    assert human.judge_verdicts(pairs, {"m": {first: "  ", "not-a-pair": "Add a hat."}}) == {
        (first, "m"): human.Verdict("P0", (Issue(3, "P0"),), "3")}  # an empty instruction omits the edit
    rates = human.verdict_rates(verdicts)
    assert rates.loc["captioner-alpha", "Correct"] == 100.0 and rates.loc["captioner-gamma", "P0"] == 100.0

    exact = human.simulate_annotators(export.sheet_dir, export.key_file, verdicts, tmp_path / "exact",
                                      n_annotators=2, noise=0.0)
    human.import_annotations(exact, export.sheet_dir, tmp_path / "store-exact")
    labels = human.unblind(tmp_path / "store-exact", export.key_file, [name for name, _ in exact])
    assert [name for name, _ in exact] == ["simulated-annotator-1", "simulated-annotator-2"]
    assert {(r.id, r.model): r.label for r in labels.itertuples() if r.annotator.endswith("1")} == \
        {key: v.label for key, v in verdicts.items()}
    assert human.agreement(labels, n_boot=20)["kappa"] == pytest.approx(1.0)

    noisy = human.simulate_annotators(export.sheet_dir, export.key_file, verdicts, tmp_path / "noisy",
                                      n_annotators=3, noise=0.3, seed=5)
    again = human.simulate_annotators(export.sheet_dir, export.key_file, verdicts, tmp_path / "again",
                                      n_annotators=3, noise=0.3, seed=5)
    assert [p.read_bytes() for _, p in noisy] == [p.read_bytes() for _, p in again]  # seeded
    assert len({p.read_bytes() for _, p in noisy}) == 3  # each annotator has its own noise
    human.import_annotations(noisy, export.sheet_dir, tmp_path / "store-noisy")
    labels = human.unblind(tmp_path / "store-noisy", export.key_file, [name for name, _ in noisy])
    assert human.agreement(labels, n_boot=20)["kappa"] < 1.0
