"""Notebook 06 under the smoke profile, on upstream files prepared here (notebook 01's test pairs, notebook 05's
instruction files), as `editcaption run --profile smoke --only 06` runs it."""
import json
import random

import pandas as pd
import pytest
import yaml

from editcaption import annotation, config, runner
from editcaption.data import teacher
from editcaption.world import synthetic
from editcaption.records import save_pairs
from editcaption.records import LONG_COLUMNS

SOURCES = {"weak-captioner": teacher.DEFAULT_RATES, "sft": {m: 0.05 for m in teacher.MODES}}  # external, ours


def prepare_upstream(root, run_name, n_pairs=14):
    """Test pairs where notebook 01 writes them and one instruction file per source where notebook 05 writes them."""
    pairs = synthetic.generate_pairs(n_pairs, seed=3, size=64, progress=False)
    save_pairs(pairs, root / run_name / "01_dataset_construction" / "test_pairs")
    folder = root / run_name / "05_automatic_evaluation" / "instructions" / "synthetic"
    folder.mkdir(parents=True)
    for name, rates in SOURCES.items():
        lines = [json.dumps({"id": row["id"], "instruction": teacher.simulate_caption(
            row["changes"], rates, random.Random(f"{name}-{row['id']}")).text})
            for row in pairs.select_columns(["id", "changes"]).to_list()]
        (folder / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    return pairs


@pytest.mark.slow
def test_smoke_06_blinds_imports_and_writes_table2(tmp_path):
    prepare_upstream(tmp_path, "nb06")
    results = runner.run_profile("smoke", only="06", run_name="nb06", output_root=str(tmp_path), progress=False)
    assert [r.status for r in results] == ["ok"]
    stage = tmp_path / "nb06" / "06_human_evaluation"
    metrics = json.loads((stage / "metrics.json").read_text())

    assert metrics["annotator_kind"] == "simulated" and metrics["judge"] == "simulated-annotators"
    assert metrics["annotators"] == [f"simulated-annotator-{k}" for k in (1, 2, 3)]
    assert metrics["models"] == ["weak-captioner", "SFT"] and metrics["n_pairs"] == 12
    assert metrics["n_sheet_rows"] == 24 and metrics["n_labels"] == 3 * 24
    assert all(i["accepted"] == 24 and i["rejected"] == 0 and not i["repeat"] for i in metrics["imports"])
    for cells in metrics["table2"].values():
        assert set(cells) == {"Correct", "P0", "P1", "P2"}
        assert sum(c["value"] for c in cells.values()) == pytest.approx(100)
        assert all(c["low"] <= c["value"] <= c["high"] for c in cells.values())
    # the weak captioner (the simulated teacher's default error rates) is labelled P0 more often
    assert metrics["table2"]["weak-captioner"]["P0"]["value"] > metrics["table2"]["SFT"]["P0"]["value"]
    agree = metrics["agreement"]
    assert agree["method"] == "fleiss" and agree["n_items"] == 24 and 0 < agree["kappa"] < 1
    assert len(agree["pairwise_cohen"]) == 3 and set(metrics["agreement_with_rule"]) == set(metrics["annotators"])

    long = pd.read_csv(stage / "table2_long.csv")
    assert tuple(long.columns) == LONG_COLUMNS and set(long["table"]) == {"table2"}
    assert len(long) == 2 * 4 and set(long["judge"]) == {"simulated-annotators"}
    assert set(long["data"]) == {"synthetic-test n=12"}
    wide = pd.read_csv(stage / "table2.csv", index_col=0)
    assert list(wide.columns) == ["Correct", "P0", "P1", "P2"] and all("[" in c for c in wide.iloc[0])
    assert list(wide.index) == ["weak-captioner", "SFT"]
    assert (stage / "table2.md").read_text().count("|") > 10 and "\\toprule" in (stage / "table2.tex").read_text()
    for name in ("table2.png", "agreement.png", "agreement.csv", "agreement.md", "agreement.tex", "labels.csv"):
        assert (stage / name).exists(), name

    sheet_dir = stage / "annotation" / "sheet"
    key_file = stage / "annotation" / "blinding_key.csv"
    assert key_file.exists() and not list(sheet_dir.rglob("blinding_key*"))
    for path in sheet_dir.iterdir():
        if path.is_file():
            assert not any(model in path.read_text() for model in (*SOURCES, "SFT", "captioner")), path

    # a rerun reuses the export and imports nothing twice
    runner.run_profile("smoke", only="06", run_name="nb06", output_root=str(tmp_path), progress=False)
    again = json.loads((stage / "metrics.json").read_text())
    assert all(i["repeat"] for i in again["imports"]) and again["table2"] == metrics["table2"]

    # people's files: a spreadsheet (CSV) and a Label Studio export, imported through the same path
    rows = annotation.read_sheet(sheet_dir / "sheet.csv")
    ana = annotation.write_sheet("evaluation", [{**r, "label": "correct"} for r in rows], tmp_path / "ana.csv")
    ben_labels = ["P5"] + ["P0" if k % 2 else "correct" for k in range(1, len(rows))]  # P5: not on the checklist
    ben = annotation.write_sheet("evaluation", [{**r, "label": label} for r, label in zip(rows, ben_labels)],
                                 tmp_path / "ben-labelstudio.json")
    profile = tmp_path / "people.yaml"
    profile.write_text(yaml.safe_dump({**config.load_profile("smoke"), "annotation_import_paths": f"ana={ana},ben={ben}",
                                       "annotation_on_error": "skip"}))
    runner.run_profile(str(profile), only="06", run_name="nb06", output_root=str(tmp_path), progress=False)
    people = json.loads((stage / "metrics.json").read_text())
    assert people["annotator_kind"] == "human" and people["annotators"] == ["ana", "ben"]
    assert people["agreement"]["method"] == "cohen" and people["agreement"]["kappa"] == pytest.approx(0.0)
    assert people["agreement"]["percent_agreement"] == pytest.approx(11 / 23) and people["agreement"]["n_items"] == 23
    ana_import, ben_import = people["imports"]
    assert (ana_import["accepted"], ben_import["accepted"], ben_import["rejected"]) == (24, 23, 1)
    assert len(ben_import["errors"]) == 1 and "invalid choice 'P5'" in ben_import["errors"][0]
    assert "row 1" in ben_import["errors"][0] and "label" in ben_import["errors"][0]
    assert sum(cells["Correct"]["value"] for cells in people["table2"].values()) == pytest.approx(2 * 75)
    assert set(pd.read_csv(stage / "table2_long.csv")["judge"]) == {"human-annotators"}
