"""The SFT data pipeline: scorers and the filter, failures counted, refinement round trip, SFT set, test split."""
import builtins
import json
import math

import datasets
import pytest

from editcaption import annotation, jsonl_cache
from editcaption.data import construct, scorers, teacher
from editcaption.world import synthetic
from editcaption.records import RecordError
from editcaption.train.sft import load_sft_dataset


@pytest.fixture(scope="module")
def pairs():
    return synthetic.generate_pairs(40, seed=7, progress=False)


@pytest.fixture(scope="module")
def candidates(pairs):
    model = teacher.SimulatedTeacher(seed=0)
    return dict(zip(pairs["id"], model.generate(pairs)))


# ------------------------------------------------------------------------------------------ scorers

def test_rule_standin_maps_the_rubric_onto_editscore_fields(pairs):
    scorer = scorers.make_scorer("rule-standin")
    row = pairs.select_columns(["id", "changes", "instruction"])[0]
    good = scorer.score(row, row["instruction"])
    assert good == {"prompt_following": 10.0, "consistency": 10.0, "perceptual_quality": 10.0,
                    "overall": 10.0}
    move = {"id": "m", "changes": [{"op": "move", "object": "red star", "attribute": "position", "before": "",
                                    "after": "", "direction": "left", "primary": True}]}
    reversed_ = scorer.score(move, "Move the red star to the right.")
    # accuracy 3 (one core error) -> 5.0; completeness 1 (reversed = miss) -> 0.0; overall sqrt(0 * 10)
    assert reversed_ == {"prompt_following": 5.0, "consistency": 0.0, "perceptual_quality": 10.0, "overall": 0.0}
    with pytest.raises(scorers.ScoreFailure, match="no structured changes"):
        scorer.score({"id": "x", "changes": []}, "Make it red.")


def test_editscore_without_the_package_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_editscore(name, *args, **kwargs):
        if name == "editscore":
            raise ImportError("No module named 'editscore'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_editscore)
    with pytest.raises(ImportError, match=r"pip install -e \.\[cluster\]"):
        scorers.make_scorer("editscore")


def test_editscore_results_are_parsed_and_its_random_guess_is_a_failure(monkeypatch):
    import sys
    import types

    import numpy as np

    calls = []

    class FakeEditScore:  # the editscore package's interface: EditScore(...).evaluate([src, tgt], instruction)
        def __init__(self, **kwargs):
            calls.append(kwargs)

        def evaluate(self, images, instruction):
            assert len(images) == 2 and images[0].size == (128, 128)
            if "guess" in instruction:
                return {"prompt_following": 7.2, "consistency": 7.2, "perceptual_quality": 8.0, "overall": 7.6,
                        "SC_reasoning": "guess_if_cannot_parse | garbled", "PQ_reasoning": "fine"}
            if "nan" in instruction:
                return {"prompt_following": float("nan"), "consistency": 5, "perceptual_quality": 5, "overall": 5}
            return {"prompt_following": np.float64(8.0), "consistency": np.float64(6.0),
                    "perceptual_quality": np.float64(9.0), "overall": np.float64(math.sqrt(6 * 9)),
                    "SC_reasoning": "ok", "PQ_reasoning": "ok"}

    monkeypatch.setitem(sys.modules, "editscore", types.SimpleNamespace(EditScore=FakeEditScore))
    scorer = scorers.make_scorer("editscore", model_name_or_path="base", lora_path="lora")
    assert calls == [{"backbone": "qwen25vl", "model_name_or_path": "base", "enable_lora": True, "lora_path": "lora",
                      "score_range": 25, "num_pass": 1}]
    ds = synthetic.generate_pairs(3, seed=1, progress=False)
    out = scorers.score_pairs(scorer, ds, ["Move the star.", "guess please", "nan please"])
    assert out[0].scores == {"prompt_following": 8.0, "consistency": 6.0, "perceptual_quality": 9.0,
                             "overall": pytest.approx(math.sqrt(54))}
    assert out[1].scores is None and "guessed a random score" in out[1].error
    assert out[2].scores is None and "'prompt_following'" in out[2].error and "finite" in out[2].error
    for bad, message in (([1, 2], "expected a mapping"), ({"overall": 3}, "lacks 'prompt_following'"),
                         ({f: "7" for f in scorers.SCORE_FIELDS}, "not a finite number"),
                         ({f: 11 for f in scorers.SCORE_FIELDS}, r"\[0.0, 10.0\]")):
        with pytest.raises(scorers.ScoreFailure, match=message):
            scorers.parse_editscore_result(bad)


class FlakyScorer:
    """Fails on every third pair and answers nonsense on every fifth."""

    name = "flaky"
    needs_images = False

    def __init__(self):
        self.calls = 0

    def score(self, pair, instruction):
        self.calls += 1
        index = int(pair["id"].rsplit("-", 1)[1])
        if index % 3 == 0:
            raise TimeoutError("scorer did not answer")
        if index % 5 == 0:
            return "I cannot rate this."
        return {"prompt_following": 9, "consistency": 9, "perceptual_quality": 9, "overall": 9}


def test_failing_scorer_is_counted_never_invented(pairs, candidates, tmp_path):
    cache = tmp_path / "scores.jsonl"
    result = construct.score_and_filter(pairs, candidates, FlakyScorer(), cache_path=cache)
    indices = [int(pid.rsplit("-", 1)[1]) for pid in pairs["id"]]
    expect_failed = {pid for pid, i in zip(pairs["id"], indices) if i % 3 == 0 or i % 5 == 0}
    assert set(result.failed) == expect_failed
    assert set(result.kept) == set(pairs["id"]) - expect_failed and not result.below
    assert all(s.scores is None for s in result.scored if s.id in expect_failed)
    assert "TimeoutError" in result.failed[pairs["id"][0]]
    summary = result.summary()
    assert summary["n_score_failures"] == len(expect_failed) and summary["scores_before"]["overall"]["n"] == len(
        result.kept)
    # a rerun takes the cached scores and asks the scorer again only for the failures
    again = FlakyScorer()
    rerun = construct.score_and_filter(pairs, candidates, again, cache_path=cache)
    assert again.calls == len(expect_failed) and rerun.kept == result.kept


def test_score_cache_after_a_kill_keeps_the_next_runs_first_record(pairs, candidates, tmp_path):
    """A run killed mid-line leaves a torn last line; the next run's first new score must start a line of its own
    (it used to be glued onto the torn line and lost, and so scored again on the run after)."""
    cache = tmp_path / "scores.jsonl"
    scorer = scorers.make_scorer("rule-standin")
    first = {pid: candidates[pid] for pid in pairs["id"][:3]}
    construct.score_and_filter(pairs.select(range(3)), first, scorer, cache_path=cache)
    with cache.open("ab") as raw:
        raw.write(b'{"id": "torn", "instruction": "Move th')
    construct.score_and_filter(pairs, candidates, scorer, cache_path=cache)
    records, torn = jsonl_cache.read_records(cache, required=("id",))
    ids = [r["id"] for r in records]
    assert torn == [4] and sorted(ids) == sorted(pairs["id"]) and len(set(ids)) == len(ids)


def test_filter_keeps_scores_at_or_above_the_threshold(pairs, candidates):
    scorer = scorers.make_scorer("rule-standin")
    result = construct.score_and_filter(pairs, candidates, scorer, field="overall", threshold=4.0)
    assert not result.failed and len(result.kept) + len(result.below) == len(pairs)
    assert result.below and all(v >= 4.0 for v in result.values("kept"))
    assert min(result.values("all")) < 4.0
    with pytest.raises(ValueError, match="not a score field"):
        construct.score_and_filter(pairs, candidates, scorer, field="composite")
    empty = {**candidates, pairs["id"][0]: "  "}
    assert construct.score_and_filter(pairs, empty, scorer).empty == [pairs["id"][0]]


def test_filter_and_refinement_lower_the_critical_error_share(pairs, candidates, tmp_path):
    raw = construct.failure_modes(pairs, candidates)
    result = construct.score_and_filter(pairs, candidates, scorers.make_scorer("rule-standin"))
    kept = construct.failure_modes(pairs, {pid: candidates[pid] for pid in result.kept})
    sheet = construct.export_refinement_sheet(pairs, result.kept, candidates, tmp_path / "sheet")
    filled = construct.simulate_refinement(sheet, dict(zip(pairs["id"], pairs["instruction"])),
                                           residual_error_rate=0.1, seed=0)
    refined = construct.import_refinement(sheet, filled, store_dir=tmp_path / "store")
    after = construct.failure_modes(pairs, refined.instructions)
    assert raw["p0_share"] > kept["p0_share"] > after["p0_share"]
    assert after["p0_share"] < raw["p0_share"] / 3


# ------------------------------------------------------------------------------------------ refinement

def test_refinement_round_trip_with_a_human_file(pairs, candidates, tmp_path):
    ids = pairs["id"][:6]
    sheet = construct.export_refinement_sheet(pairs, ids, candidates, tmp_path / "sheet")
    assert (sheet / "sheet.csv").exists() and (sheet / "labelstudio_tasks.json").exists()
    assert len(list((sheet / "images").glob("*.png"))) == 12
    # a person's CSV: four rows rewritten, one left blank, one missing
    rows = annotation.read_sheet(sheet / "sheet.jsonl")
    for k, row in enumerate(rows[:5]):
        row["refined_instruction"] = f"Human text {k}." if k != 2 else ""
    human = annotation.write_sheet("refinement", rows[:5], tmp_path / "from_annotator.csv")
    refined = construct.import_refinement(sheet, human, store_dir=tmp_path / "store", annotator="human")
    assert refined.instructions == {ids[k]: f"Human text {k}." for k in (0, 1, 3, 4)}
    assert refined.n_rejected == 1 and "refined_instruction" in refined.problems[0]
    assert set(refined.missing) == {ids[2], ids[5]}
    # the same sheet is reused on a rerun; a sheet for other rows is refused
    assert construct.export_refinement_sheet(pairs, ids, candidates, tmp_path / "sheet") == sheet
    with pytest.raises(RecordError, match="other pairs"):
        construct.export_refinement_sheet(pairs, ids[:3], candidates, tmp_path / "sheet")


def test_simulated_refinement_needs_reference_instructions(pairs, candidates, tmp_path):
    sheet = construct.export_refinement_sheet(pairs, pairs["id"][:2], candidates, tmp_path / "sheet")
    with pytest.raises(RecordError, match="refinement_import_path"):
        construct.simulate_refinement(sheet, {}, residual_error_rate=0.0, seed=0)


# ------------------------------------------------------------------------------------------ SFT and test

def test_sft_set_loads_for_training_and_splits_do_not_overlap(pairs, tmp_path):
    refined = {pid: f"Instruction {k}." for k, pid in enumerate(pairs["id"][:30])}
    sft = construct.build_sft_set(pairs, refined, validation_fraction=0.2, seed=0)
    assert (len(sft["train"]), len(sft["validation"])) == (24, 6)
    saved = construct.save_sft_set(sft, tmp_path / "sft")
    train = load_sft_dataset(saved["train"])
    parquet = datasets.Dataset.from_parquet(str(tmp_path / "sft" / "train.parquet"))  # the same rows, as parquet
    assert parquet["id"] == train["id"] and parquet[0]["images"][0].size == (128, 128)
    row = train[0]
    assert set(train.column_names) == {"images", "prompt", "completion", "id", "edit_type", "category"}
    assert len(row["images"]) == 2 and row["images"][0].size == (128, 128)
    assert row["completion"][0]["content"][0]["text"] == refined[row["id"]]
    assert [c["type"] for c in row["prompt"][0]["content"]] == ["image", "image", "text"]
    again = construct.build_sft_set(pairs, refined, validation_fraction=0.2, seed=0)
    assert again["validation"]["id"] == sft["validation"]["id"]
    test = construct.build_test_pairs(20, seed=0, train_pairs=pairs, out_dir=tmp_path / "test_pairs")
    assert len(test) == 20 and not set(test["id"]) & set(pairs["id"])
    construct.check_no_overlap({"train": load_sft_dataset(saved["train"]),
                                "validation": load_sft_dataset(saved["validation"]), "test": test})
    assert (tmp_path / "test_pairs" / "state.json").exists()


def test_overlap_is_refused(pairs):
    with pytest.raises(RecordError, match="shared by splits 'a' and 'b'"):
        construct.check_no_overlap({"a": pairs.select(range(3)), "b": pairs.select(range(2, 5))})
    same_scene = pairs.select([0]).map(lambda row: {"id": "renamed"})
    with pytest.raises(RecordError, match="image is shared"):
        construct.check_no_overlap({"a": pairs.select([0]), "b": same_scene})


def test_test_pairs_leave_out_scenes_seen_in_training(pairs):
    first = construct.build_test_pairs(6, seed=0, train_pairs=pairs)
    seen = first.map(lambda row: {"id": "train-" + row["id"]})  # the same scenes under other ids
    second = construct.build_test_pairs(6, seed=0, train_pairs=seen)
    assert second["id"] != first["id"]
    construct.check_no_overlap({"train": seen, "test": second})


def test_funnel_and_metrics_are_json(pairs, candidates, tmp_path):
    result = construct.score_and_filter(pairs, candidates, scorers.make_scorer("rule-standin"))
    sheet = construct.export_refinement_sheet(pairs, result.kept, candidates, tmp_path / "sheet")
    filled = construct.simulate_refinement(sheet, dict(zip(pairs["id"], pairs["instruction"])),
                                           residual_error_rate=0.0, seed=0)
    refined = construct.import_refinement(sheet, filled, store_dir=tmp_path / "store")
    sft = construct.build_sft_set(pairs, refined.instructions, validation_fraction=0.1, seed=0)
    counts = construct.funnel(pairs, result, refined, sft)
    steps = list(counts.values())[:5]  # pairs, captioned, scored, kept, refined
    assert steps == sorted(steps, reverse=True) and steps[0] == len(pairs)
    assert counts["SFT train"] + counts["SFT validation"] == counts["refined"] == len(result.kept)
    json.dumps({**counts, **result.summary()})


def test_caption_backend_passes_each_engine_the_parameters_it_takes():
    common = dict(seed=3, model_name_or_path="some/model", base_url="", batch_size=4, max_new_tokens=32,
                  teacher_rates={"vague": 0.0})
    local = construct.caption_backend("transformers", **common)
    assert (local.model, local.batch_size, local.max_new_tokens, local.seed) == ("some/model", 4, 32, 3)
    remote = construct.caption_backend("openai", **{**common, "base_url": "http://127.0.0.1:9/v1"})
    assert (remote.model, remote.base_url) == ("some/model", "http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="base_url"):
        construct.caption_backend("openai", **common)
    simulated = construct.caption_backend("simulated-teacher", **common)
    assert simulated.seed == 3 and simulated.rates["vague"] == 0.0
    with pytest.raises(ValueError, match="unknown caption backend 'glm'"):
        construct.caption_backend("glm", **common)


def test_editscore_batch_api_on_a_vllm_backbone_reads_the_raw_replies(monkeypatch, tmp_path):
    """Upstream's `batch_evaluate` (vLLM backbones) returns min(SC), PQ, O and raw replies, and puts the
    middle of the range in place of a reply it cannot parse: the fake below does the same."""
    import json as json_module
    import sys
    import types

    batches = []

    def parse_vlm_output_to_dict(text):  # editscore.json_parser's contract: {"score": [...], "reasoning": ...}
        try:
            data = json_module.loads(text)
        except ValueError:
            return {"score": [], "reasoning": ""}
        return {"score": [float(v) for v in data["score"]], "reasoning": data.get("reasoning", "")}

    class FakeVLLMBackbone:
        def batch_inference(self, prompts, seed=None):
            raise AssertionError("the fake batch_evaluate answers itself")

    class FakeEditScore:
        def __init__(self, **kwargs):
            self.model = FakeVLLMBackbone()

        def evaluate(self, images, instruction):
            raise AssertionError("a vLLM backbone with one pass goes through batch_evaluate")

        def batch_evaluate(self, image_prompts, text_prompt):
            batches.append(len(text_prompt))
            out = []
            for images, text in zip(image_prompts, text_prompt):
                assert len(images) == 2 and images[0].size == (128, 128)
                sc_raw = "not json" if "garbled" in text else json_module.dumps({"score": [20, 15], "reasoning": "r"})
                pq_raw = json_module.dumps({"score": [22.5], "reasoning": "q"})
                sc = 12.5 / 2.5 if "garbled" in text else 15 / 2.5  # upstream: the middle score on no parse
                out.append({"SC_score": sc, "PQ_score": 9.0, "O_score": math.sqrt(sc * 9), "SC_raw_output": sc_raw,
                            "PQ_raw_output": pq_raw, "SC_score_reasoning": "", "PQ_score_reasoning": ""})
            return out

    fake = types.ModuleType("editscore")
    fake.EditScore = FakeEditScore
    parser = types.ModuleType("editscore.json_parser")
    parser.parse_vlm_output_to_dict = parse_vlm_output_to_dict
    monkeypatch.setitem(sys.modules, "editscore", fake)
    monkeypatch.setitem(sys.modules, "editscore.json_parser", parser)
    scorer = scorers.make_scorer("editscore", backbone="qwen25vl_vllm", model_name_or_path="base", lora_path="lora")
    assert scorer.batched
    ds = synthetic.generate_pairs(5, seed=1, progress=False)
    texts = ["Move the star.", "garbled reply", "Turn it red.", "Add a cup.", "Remove it."]
    cache = tmp_path / "scores.jsonl"
    out = scorers.score_pairs(scorer, ds, texts, batch_size=2, cache_path=cache)
    assert batches == [2, 2, 1]
    assert out[0].scores == {"prompt_following": 8.0, "consistency": 6.0, "perceptual_quality": 9.0,
                             "overall": pytest.approx(math.sqrt(54))}
    assert out[1].scores is None and "middle of the range" in out[1].error
    assert [o.ok for o in out] == [True, False, True, True, True]
    again = scorers.score_pairs(scorer, ds, texts, batch_size=2, cache_path=cache)  # only the failure again
    assert batches == [2, 2, 1, 1] and [o.scores for o in again] == [o.scores for o in out]
    several = scorers.make_scorer("editscore", backbone="qwen25vl_vllm", num_pass=4)
    assert not several.batched  # batch_evaluate keeps only the first pass's raw replies
