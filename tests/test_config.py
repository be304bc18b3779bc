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


@pytest.mark.parametrize("name", PROFILES)
def test_a_profile_names_recipes_and_sets_no_trainer_field_itself(name):
    """Trainer fields live in one place, the recipe (params/recipes/): a profile that set learning_rate would have
    no notebook to give it to. run_name, seed and model_name_or_path are the notebooks' own parameters, which they
    hand to the trainer as they are."""
    from editcaption import runner
    from editcaption.train import recipe

    values = config.load_profile(name)
    fields = set(recipe.stage_fields("sft")) | set(recipe.stage_fields("dpo"))
    assert not (set(values) & fields) - {"run_name", "seed", "model_name_or_path"}, f"{name}.yaml sets trainer fields"
    runner.check_recipes(values)  # every recipe it names (or the notebooks' default) reads
    schema = config.parameter_schema()
    for parameter, stage in runner.RECIPE_PARAMETERS.items():
        assert recipe.read_recipe(values.get(parameter, schema[parameter].default), stage) is not None


def test_a_profile_naming_a_missing_recipe_or_a_recipe_with_an_unknown_field_stops_the_run(tmp_path):
    from editcaption import runner

    with pytest.raises(config.ConfigError, match="recipe .*nowhere.yaml not found"):
        runner.check_recipes({"sft_recipe": str(tmp_path / "nowhere.yaml")})
    bad = tmp_path / "dpo.yaml"
    bad.write_text("dpo_learning_rate: 1.0e-4\n")  # the old prefixed name: a recipe takes the trainer's own
    with pytest.raises(config.ConfigError, match="unknown key 'dpo_learning_rate'"):
        runner.check_recipes({"dpo_recipe": str(bad)})
