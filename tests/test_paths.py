"""paths: where notebook 04's DPO models are, read from its metrics.json, with clear errors."""
import json

import pytest

from editcaption import paths


def write_04(root, text):
    stage = paths.stage_dir("run", "04_hae_dpo", root)
    (stage / "metrics.json").write_text(text)
    return stage / "metrics.json"


def test_first_seed_models_come_from_the_recorded_runs(tmp_path):
    runs = {"dpo": {"variant": "dpo", "seed": 0, "model": "/m/sweep/lr1e-4/final"},
            "dpo_seed1": {"variant": "dpo", "seed": 1, "model": "/m/dpo_seed1/final"},
            "hae": {"variant": "hae", "seed": 0, "model": "/m/hae/final"}}
    write_04(tmp_path, json.dumps({"runs": runs}))
    assert paths.dpo_models("run", tmp_path) == {"dpo": "/m/sweep/lr1e-4/final", "hae": "/m/hae/final"}
    assert paths.dpo_model("hae", "run", tmp_path) == "/m/hae/final"
    with pytest.raises(FileNotFoundError, match=r"metrics.json: notebook 04 recorded no first-seed run of 'h_only' "
                                                r"\(its runs: \['dpo', 'hae'\]\)"):
        paths.dpo_model("h_only", "run", tmp_path)


def test_no_or_broken_metrics_of_notebook_04(tmp_path):
    assert paths.dpo_runs("run", tmp_path) == {}
    with pytest.raises(FileNotFoundError, match="its runs: none"):
        paths.dpo_model("hae", "run", tmp_path)
    write_04(tmp_path, '{"runs": ')
    with pytest.raises(ValueError, match=r"04_hae_dpo/metrics.json: not valid JSON"):
        paths.dpo_runs("run", tmp_path)
