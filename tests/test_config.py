"""Profiles: every key declared by a notebook, types checked, clear errors on bad keys."""
from pathlib import Path

import pytest

from editcaption import config, paths

PROFILES = sorted(p.stem for p in paths.params_dir().glob("*.yaml"))


def test_the_four_profiles_exist():
    assert {"smoke", "demo", "qwen3vl-32b", "qwen3vl-235b-a22b"} <= set(PROFILES)


@pytest.mark.parametrize("name", PROFILES)
def test_profile_keys_are_declared_by_a_notebook(name):
    schema = config.parameter_schema()
    values = config.load_profile(name, schema=schema)
    undeclared = sorted(set(values) - set(schema))
    assert not undeclared, f"{name}.yaml holds keys no notebook declares: {undeclared}"


@pytest.mark.parametrize("name", PROFILES)
def test_profile_opens_with_a_hardware_comment(name):
    first = (paths.params_dir() / f"{name}.yaml").read_text().splitlines()[0]
    assert first.startswith("#") and any(w in first.lower() for w in ("cpu", "gpu", "h800", "h100"))


def test_parameters_cells_hold_literals_with_comments():
    assert len(config.list_notebooks()) == 9  # 00-08: a loop over no notebooks would pass
    for nb in config.list_notebooks():
        params = config.notebook_parameters(nb)
        assert params, f"{nb.name}: empty parameters cell"
        for p in params.values():
            assert p.comment, f"{nb.name}: parameter '{p.name}' has no trailing comment"
        assert {"run_name", "output_root", "seed"} <= set(params), nb.name


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    return path


def test_unknown_key_names_key_and_file(tmp_path):
    path = _write(tmp_path, "seed: 1\nlearning_rte: 0.1\n")
    with pytest.raises(config.ConfigError, match=r"bad\.yaml.*unknown key 'learning_rte'"):
        config.load_profile(path)


def test_wrong_type_names_key_expected_and_found(tmp_path):
    path = _write(tmp_path, "n_pairs: many\n")
    with pytest.raises(config.ConfigError, match=r"key 'n_pairs' expects int.*found str"):
        config.load_profile(path)


def test_bool_is_not_an_int_and_int_is_a_float(tmp_path):
    schema = {"n": config.Parameter("n", 3, "c", "x"), "lr": config.Parameter("lr", 0.1, "c", "x")}
    config.validate_profile({"lr": 1}, schema)
    with pytest.raises(config.ConfigError, match="expects int"):
        config.validate_profile({"n": True}, schema)
    with pytest.raises(config.ConfigError, match="expects int"):
        config.validate_profile({"n": 2.5}, schema)


def test_nested_and_non_mapping_profiles_are_refused(tmp_path):
    with pytest.raises(config.ConfigError, match="flat"):
        config.load_profile(_write(tmp_path, "seed:\n  a: 1\n"))
    with pytest.raises(config.ConfigError, match="mapping"):
        config.load_profile(_write(tmp_path, "- 1\n- 2\n"))
    with pytest.raises(config.ConfigError, match="not found"):
        config.load_profile("no-such-profile")


def test_parameters_cell_with_a_call_is_refused(tmp_path):
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = len('abc')  # no")])
    nb.cells[0].metadata["tags"] = ["parameters"]
    path = tmp_path / "99_bad.ipynb"
    nbformat.write(nb, path)
    with pytest.raises(config.ConfigError, match="literal"):
        config.notebook_parameters(path)


def test_notebooks_are_committed_without_outputs():
    import json

    assert config.list_notebooks(), "no notebooks found"
    for nb in config.list_notebooks():
        cells = json.loads(nb.read_text())["cells"]
        assert not any(c.get("outputs") or c.get("execution_count") for c in cells if c["cell_type"] == "code"), nb.name


# Keys a training notebook sets itself from its upstream stages, whatever the profile says.
SET_BY_NOTEBOOK = {"02_sft": {"model_name_or_path", "sft_data_path", "output_dir"},
                   "04_hae_dpo": {"model_name_or_path", "dpo_ref_model", "preference_data_path", "dpo_variant",
                                  "output_dir", "learning_rate", "chosen_nll_weight", "seed"}}


def _stage_specs():
    from editcaption.train import hae_dpo, sft

    return {"02_sft": (sft.SFT_KEYS, sft.PREFIX), "04_hae_dpo": (hae_dpo.DPO_KEYS, hae_dpo.PREFIX)}


@pytest.mark.parametrize("name", PROFILES)
@pytest.mark.parametrize("stage", ["02_sft", "04_hae_dpo"])
def test_every_profile_key_a_training_stage_reads_reaches_its_trainer(name, stage):
    """The runner passes a notebook only the keys its parameters cell declares, and the notebook hands the
    stage only those: a profile key the stage reads but the notebook does not declare would silently train
    with the stage's default (as freeze_vision_tower once did for DPO)."""
    spec, prefix = _stage_specs()[stage]
    notebook = next(nb for nb in config.list_notebooks() if nb.stem == stage)
    declared = set(config.notebook_parameters(notebook))
    values = config.load_profile(name)
    lost = []
    for key in values:
        stage_key = key[len(prefix):] if key.startswith(prefix) and key[len(prefix):] in spec else key
        if stage_key in spec and stage_key not in SET_BY_NOTEBOOK[stage] and key not in declared:
            lost.append(key)
    assert not lost, f"{name}.yaml sets {lost}, which {stage} reads but {notebook.name} does not declare"
