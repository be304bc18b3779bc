"""The shared smoke run's recorded metrics against the pinned ones (tests/smoke_pins.py: which metrics, their
tolerances and how they were measured; `.venv/bin/python tests/smoke_pins.py` records them again)."""
import json

import pytest
import smoke_pins


@pytest.mark.slow
def test_the_smoke_runs_metrics_equal_the_pinned_ones(smoke_run):
    run, _ = smoke_run
    expected = json.loads(smoke_pins.EXPECTED.read_text(encoding="utf-8"))
    assert len(expected) == len(smoke_pins.PINS) >= 30
    problems = smoke_pins.mismatches(smoke_pins.extract(run), expected)
    assert not problems, "pinned smoke metrics moved:\n" + "\n".join(problems)


def test_a_change_larger_than_the_tolerance_is_reported():
    """Each kind of pin fails on a change the size of a real one (another seed moves a DPO loss by 7.5e-4 of it)."""
    expected = json.loads(smoke_pins.EXPECTED.read_text(encoding="utf-8"))
    assert smoke_pins.mismatches(dict(expected), expected) == []
    by_kind = {}
    for stage, keys, kind in smoke_pins.PINS:
        by_kind.setdefault(kind, smoke_pins.pin_name(stage, keys))
    assert set(by_kind) == set(smoke_pins.TOLERANCE)
    for kind, name in by_kind.items():
        moved = dict(expected)
        moved[name] = expected[name] * (1 + 7.5e-4) + (1 if kind in ("count", "decoded") else 0)
        [line] = smoke_pins.mismatches(moved, expected)
        assert line.startswith(name) and kind in line
    missing = {k: v for k, v in expected.items() if k != by_kind["training"]}
    assert smoke_pins.mismatches(missing, expected) == [f"{by_kind['training']}: expected {expected[by_kind['training']]!r}, "
                                                        f"got None (training: rel 1e-05, abs 0)"]


def test_a_list_pin_finds_exactly_one_item():
    rows = [{"model": "SFT", "subset": "all", "measure": "p0", "rate": 0.5},
            {"model": "SFT", "subset": "all", "measure": "mode", "rate": 0.1}]
    assert smoke_pins.lookup({"r": rows}, ("r", {"model": "SFT", "measure": "p0"}, "rate"), "x") == 0.5
    with pytest.raises(KeyError, match="2 list items match"):
        smoke_pins.lookup({"r": rows}, ("r", {"model": "SFT"}, "rate"), "x")
    with pytest.raises(KeyError, match="no key 'S'"):
        smoke_pins.lookup({"sft": {"n": 3}}, ("sft", "S"), "x")
