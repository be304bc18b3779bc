"""train.experiment.sweep_budget's choice: collapse (run-on answers) rules a setting out, the paper's loss (no NLL
term) comes first, the NLL term only when every setting without it collapses; the others are compared with the
chosen one pair by pair."""
from __future__ import annotations

import re

import pytest

from editcaption.eval import summary, targeted
from editcaption.train import experiment
from editcaption.world.synthetic import generate_pairs

PAIRS = generate_pairs(20, seed=4, size=64, progress=False, edit_types=["move"], max_objects=2)
REFERENCES = list(PAIRS["instruction"])
FLIP = {"left": "right", "right": "left", "up": "down", "down": "up"}


def _reversed(text: str) -> str:
    return re.sub(r"\b(left|right|up|down)\b", lambda m: FLIP[m.group()], text)


def _texts(n_wrong: int, run_on: bool = False) -> list[str]:
    texts = [_reversed(t) if i < n_wrong else t for i, t in enumerate(REFERENCES)]
    if run_on:  # the collapse the issue saw: clauses appended to every answer
        texts = [t.rstrip(".") + ", and make the whole image darker, and make the background gray." for t in texts]
    return texts


def _sweep(monkeypatch, tmp_path, answers: dict[str, list[str]], rates: str, weights: str):
    def fake_run(params, run_dir, **_):
        return {"seconds": 1.0, "metrics": {"global_step": 1}, "params": dict(params), "dir": str(run_dir),
                "model": run_dir.name}

    def fake_scores(models, subsets, cache_dir, **_):
        return {name: {"orientation": summary.score_instructions(PAIRS, answers[name])} for name in models}

    monkeypatch.setattr(experiment, "train_run", fake_run)
    monkeypatch.setattr(targeted, "score_models", fake_scores)
    return experiment.sweep_budget(rates, weights, {"learning_rate": 1e-6}, {"orientation": PAIRS}, tmp_path,
                                   sft_model="SFT")


def test_the_paper_loss_wins_unless_it_collapses(monkeypatch, tmp_path):
    answers = {"SFT": _texts(10), "lr1e-05_nll0": _texts(6), "lr0.0001_nll0": _texts(0, run_on=True),
               "lr1e-05_nll1": _texts(2), "lr0.0001_nll1": _texts(4)}
    sweep = _sweep(monkeypatch, tmp_path, answers, "1e-5,1e-4", "0,1")
    table = sweep.table.set_index("setting")
    assert table.loc["lr0.0001_nll0", "collapsed"] and not table.loc["lr1e-05_nll0", "collapsed"]
    assert table.loc["lr0.0001_nll0", "p0"] == 0.0  # the lowest P0, but run-on: ruled out
    # lr1e-05_nll1 has a lower P0, but the paper's loss comes first while it does not collapse
    assert sweep.best == {"learning_rate": 1e-5, "chosen_nll_weight": 0.0,
                          "reason": "the paper's loss (no NLL term), not collapsed"}
    assert table["chosen"].sum() == 1 and table.loc["lr1e-05_nll0", "chosen"]
    assert table.loc["lr1e-05_nll0", "vs_chosen_diff"] == 0.0
    assert table.loc["lr1e-05_nll1", "vs_chosen_diff"] == pytest.approx(-0.2)  # paired, on the same pairs
    assert table.loc["SFT", "vs_chosen_diff"] == pytest.approx(0.2)
    assert table.loc["lr0.0001_nll0", "multi_clause"] == 1.0 > table.loc["SFT", "multi_clause"]


def test_the_nll_term_is_taken_only_when_every_setting_without_it_collapses(monkeypatch, tmp_path):
    answers = {"SFT": _texts(10), "lr1e-05_nll0": _texts(3, run_on=True), "lr1e-05_nll1": _texts(5)}
    sweep = _sweep(monkeypatch, tmp_path, answers, "1e-5", "0,1")
    assert sweep.best["chosen_nll_weight"] == 1.0 and "deviation" in sweep.best["reason"]
    table = sweep.table.set_index("setting")
    assert table.loc["lr1e-05_nll0", "collapsed"] and table.loc["lr1e-05_nll1", "chosen"]
