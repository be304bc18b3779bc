"""The environment cell's helpers: seeding without transformers gives the generators transformers.set_seed gives."""
import random

import numpy as np
import torch
from transformers import set_seed

from editcaption import env


def _draws():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_everything_draws_what_transformers_set_seed_draws():
    set_seed(7)
    expected = _draws()
    env.seed_everything(7)
    assert _draws() == expected
    env.seed_everything(8)
    assert _draws() != expected


def test_start_stage_seeds_and_records_the_environment(tmp_path):
    stage = env.start_stage("99_check", "run", str(tmp_path), seed=7)
    first = _draws()
    env.start_stage("99_check", "run", str(tmp_path), seed=7)
    assert _draws() == first
    info = (stage / "environment.json").read_text()
    assert '"seed": 7' in info and '"torch"' in info
