"""world.settings.World: the world notebook 01 writes and notebooks 03 and 07 read."""
import json

import pytest

from editcaption.data import teacher
from editcaption.world.settings import World

WORLD = World(image_size=96, layout="grid", edit_types="add,move", max_objects=2, teacher_rates=teacher.DEFAULT_RATES)


def test_saved_world_reads_back_equal(tmp_path):
    path = WORLD.save(tmp_path)
    assert path.name == "world.json" and World.load(path) == WORLD
    assert WORLD.pair_options == {"image_size": 96, "layout": "grid", "edit_types": "add,move", "max_objects": 2}
    assert json.loads(path.read_text())["teacher_rates"] == teacher.DEFAULT_RATES


def test_a_world_file_with_a_missing_or_unknown_field_names_it(tmp_path):
    data = WORLD.as_dict()
    del data["layout"]
    (tmp_path / "world.json").write_text(json.dumps({**data, "colour": "red"}))
    with pytest.raises(ValueError, match=r"world.json: unknown fields \['colour'\], missing fields \['layout'\]"):
        World.load(tmp_path / "world.json")


def test_a_run_without_notebook_01_says_which_notebook_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="run 01_dataset_construction for run 'nowhere' first"):
        World.of_run("", "nowhere", tmp_path)
    WORLD.save(tmp_path)
    assert World.of_run(str(tmp_path / "world.json"), "nowhere", tmp_path) == WORLD
