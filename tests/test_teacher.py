"""The simulated teacher: determinism, rates as configured, injected errors as the rule judge finds them."""
import random

import pytest

from editcaption.data import teacher
from editcaption.world import synthetic
from editcaption.world.rule_judge import RuleJudge
from editcaption.records import RecordError, make_change


@pytest.fixture(scope="module")
def pairs():
    return synthetic.generate_pairs(600, seed=3, progress=False).select_columns(["id", "changes"]).to_list()


def _captions(pairs, seed=0, **rates):
    model = teacher.SimulatedTeacher(seed=seed, rates=rates)
    return model, {row["id"]: model.simulate(row["id"], row["changes"]) for row in pairs}


def test_same_seed_same_captions_in_any_order(pairs):
    _, first = _captions(pairs, seed=5)
    _, again = _captions(list(reversed(pairs)), seed=5)
    _, other = _captions(pairs, seed=6)
    assert first == again
    assert sum(first[k].text != other[k].text for k in first) > len(first) // 2


def test_measured_rates_match_configured_rates(pairs):
    rates = {"orientation": 0.4, "viewpoint": 0.7, "detail": 0.3, "secondary": 0.5, "vague": 0.2}
    model, captions = _captions(pairs, **rates)
    report = teacher.check_against_judge(captions, {r["id"]: r["changes"] for r in pairs}, model.rates)
    for mode, stats in report["modes"].items():
        assert stats["eligible"] >= 100, (mode, stats)
        assert abs(stats["measured"] - rates[mode]) < 0.1, (mode, stats)
    silent, clean = _captions(pairs, **{m: 0.0 for m in teacher.MODES})
    report = teacher.check_against_judge(clean, {r["id"]: r["changes"] for r in pairs}, silent.rates)
    assert report["p0_share"] == 0 and report["clean_judged_clean"] >= 0.99 * len(pairs)


def test_every_injected_error_is_what_the_judge_tags(pairs):
    model, captions = _captions(pairs)
    report = teacher.check_against_judge(captions, {r["id"]: r["changes"] for r in pairs}, model.rates)
    for mode, stats in report["modes"].items():
        assert stats["found"] == stats["injected"] > 0, (mode, stats)
    # the judge reads a few of the generator's own wordings as errors (a replace and a recolouring of
    # the same noun: "swap the purple square for a green triangle ... the purple triangle"), never P0
    assert report["clean_judged_clean"] >= 0.99 * report["clean_captions"] > 0
    assert report["p0_agreement"] == 1.0 and report["p0_share"] == report["p0_expected"]


def test_default_rates_give_about_the_papers_critical_error_share(pairs):
    model, captions = _captions(pairs)
    report = teacher.check_against_judge(captions, {r["id"]: r["changes"] for r in pairs}, model.rates)
    assert 0.40 <= report["p0_share"] <= 0.54, report["p0_share"]  # calibrated at 47 % on 2000 pairs


def test_each_failure_mode_on_a_hand_made_pair():
    judge = RuleJudge()
    move = [make_change("move", "red star", "position", direction="left")]
    add = [make_change("add", "blue circle", "color", "", "blue", "right"),
           make_change("tone", "image", "brightness", "", "darker", "darker", primary=False)]
    mirror = [make_change("mirror", "image", "orientation", direction="horizontal")]
    cases = [(move, "orientation", "orientation"), (add, "detail", "detail"), (mirror, "viewpoint", "viewpoint"),
             (add, "secondary", "detail"), (move, "vague", "detail"),
             (move, "detail", "orientation")]  # a dropped direction is an orientation omission (table 6, item 4)
    for changes, mode, etype in cases:
        for seed in range(5):
            only = {m: float(m == mode) for m in teacher.MODES}
            caption = teacher.simulate_caption(changes, only, random.Random(seed))
            assert caption.injected == (mode,) and caption.expected[0][0] == etype
            errors = judge.score(changes, caption.text)["errors"]
            assert (etype, teacher.EXPECTED_TAG[mode][1]) in {(e["type"], e["severity"]) for e in errors}, caption
    caption = teacher.simulate_caption(move, {"orientation": 1.0, "vague": 0.0}, random.Random(0))
    assert "right" in caption.text and "left" not in caption.text


def test_bad_rates_and_missing_changes_are_refused():
    with pytest.raises(ValueError, match="unknown teacher error modes"):
        teacher.check_rates({"orientaton": 0.1})
    with pytest.raises(ValueError, match=r"'detail' must be a number in \[0, 1\]"):
        teacher.check_rates({"detail": 1.5})
    with pytest.raises(ValueError, match="structured changes"):
        teacher.simulate_caption([], {}, random.Random(0))


def test_registered_caption_backend_with_cache_and_injected_errors(tmp_path):
    import json

    from editcaption import generation

    ds = synthetic.generate_pairs(12, seed=1, progress=False)
    model = generation.make_backend("simulated-teacher", seed=2, rates={"vague": 0.5})
    assert isinstance(model, teacher.SimulatedTeacher) and model.rates["vague"] == 0.5
    cache = tmp_path / "captions.jsonl"
    texts = model.generate(ds, cache_path=cache, progress=False)
    lines = generation.read_cache(cache)
    assert [line["instruction"] for line in lines] == texts and [line["id"] for line in lines] == ds["id"]
    assert all(line["backend"] == "simulated-teacher" and line["status"] == "ok" for line in lines)
    injected = [json.loads(line) for line in model.write_injected(tmp_path / "injected.jsonl").read_text().splitlines()]
    assert {item["id"]: item["injected"] for item in injected} == model.injected_errors()
    assert any(item["injected"] for item in injected)
    # a rerun reads the cache and still knows what was injected; other rates never reuse its lines
    again = generation.make_backend("simulated-teacher", seed=2, rates={"vague": 0.5})
    assert again.generate(ds, cache_path=cache, progress=False) == texts and again.stats["n_cached"] == 12
    assert again.injected_errors() == model.injected_errors()
    other = generation.make_backend("simulated-teacher", seed=2, rates={"vague": 0.0})
    other.generate(ds, cache_path=cache, progress=False)
    assert other.stats["n_cached"] == 0
    with pytest.raises(ValueError, match="takes no parameter"):
        generation.make_backend("simulated-teacher", model_name_or_path="x")
    with pytest.raises(RecordError, match="changes"):
        model.generate(ds.remove_columns("changes"), progress=False)
