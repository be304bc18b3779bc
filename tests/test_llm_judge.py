"""The LLM judge: appendix-B prompts built from the rubric, reply parsing, failure accounting, the resumable
cache, the API key kept out of every file, against a fault-injecting server, a real `transformers serve`,
the tiny model locally, and `editcaption score --judge openai` killed mid-run and rerun."""
import hashlib
import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from editcaption import records
from editcaption.world.synthetic import generate_pairs
from editcaption import rubric
from editcaption.eval import judge_prompts
from editcaption.world.rule_judge import RuleJudge
from editcaption.eval.llm_judge import (DIMENSIONS, FAILURE_KINDS, RESULT_COLUMNS, LLMJudge, make_judge, parse_reply,
                                        read_instructions)
from editcaption.generation import image_data_url
from editcaption.models import build_tiny_model
from editcaption.records import RecordError
from serve_helper import transformers_serve
from fault_server import FaultServer, Reply, first_image_url, ok, prompt_text, rate_limited, server_error, slow

GT = {"primary_changes": ["The dress colour changes from grey to pink.", "The straps become thin spaghetti straps."],
      "secondary_changes": ["The gold necklace becomes a thin silver one."],
      "overall": "A grey wide-strap dress becomes a pink spaghetti-strap dress."}
SECRET = "sk-editcaption-FAKE-judge-key-0123456789"


def dimension_of(text: str) -> str:
    return re.search(r'\{"dimension": "(\w+)"', text).group(1)


def judge_key(body: dict) -> str:
    """The fault server's key: one script per (pair, dimension)."""
    return f"{first_image_url(body)}|{dimension_of(prompt_text(body))}"


def key(item: dict, dimension: str) -> str:
    return f"{image_data_url(item['source_image'])}|{dimension}"


def verdict(dimension: str, score) -> Reply:
    """A judge's reply: its steps, then the JSON line in a code fence (which the parser tolerates)."""
    line = json.dumps({"dimension": dimension, "score": score, "reasoning": "checked"})
    return ok(f"Step 1: two changes.\nStep 2: ...\n```json\n{line}\n```")


def by_dimension(scores: dict):
    """A server reply valid for whichever dimension is asked (scores: dimension -> score)."""
    return lambda request: verdict(d := dimension_of(prompt_text(request["body"])), scores[d])


def items(n: int, prefix: str = "p") -> list[dict]:
    return [{"id": f"{prefix}{i}", "source_image": Image.new("RGB", (16, 16), (30 * i % 256, 20, 200)),
             "target_image": Image.new("RGB", (16, 16), (10, 30 * i % 256, 90)), "gt": GT,
             "instruction": f"Change the grey dress to a pink spaghetti-strap dress ({i})."} for i in range(n)]


def fast_judge(server: FaultServer, **params) -> LLMJudge:
    return LLMJudge("judge-model", base_url=server.url, **{"timeout": 5.0, "max_retries": 2, "backoff_s": 0.01, **params})


# ----------------------------------------------------------------------------------------- the prompts

def test_the_completeness_table_in_the_prompt_is_the_rubrics():
    lines = judge_prompts.completeness_table()
    assert len(lines) == 6 and lines[0].strip() == "R = 100% -> 5.0" and lines[-1].strip() == "R = 0% -> 1.0"
    for line in lines[1:-1]:
        low, high, score = re.fullmatch(r"\s*(\d+)% <=? R < (\d+)% -> ([\d.]+)", line).groups()
        low = max(float(low) / 100, 0.001)
        for r in (low, float(high) / 100 - 0.001):
            assert rubric.completeness_from_coverage(r, False) == float(score), line
    prompt = judge_prompts.build_prompt("completeness", GT, "x")
    assert all(line in prompt for line in lines)
    assert judge_prompts.COMPLETENESS_VALUES == (1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0)


def test_the_clarity_prompt_carries_every_forbidden_term_and_ceiling():
    prompt = judge_prompts.build_prompt("clarity", GT, "x")
    for terms in rubric.FORBIDDEN_TERMS.values():
        assert all(term in prompt for term in terms)
    for n in (1, 2, 3):
        assert f"max {rubric.clarity_ceiling(n):.1f}" in prompt
    words, points, deduction = judge_prompts.DENSITY_WORDS, judge_prompts.DENSITY_POINTS, judge_prompts.DENSITY_DEDUCTION
    assert rubric.clarity_score(0, 1.0, words + 1, points - 1) == 5.0 - deduction
    assert rubric.clarity_score(0, 1.0, words, points - 1) == rubric.clarity_score(0, 1.0, words + 1, points) == 5.0


def test_the_accuracy_prompts_thresholds_are_the_rubrics():
    low, high = judge_prompts.ACCURACY_COVERAGE
    assert [rubric.accuracy_score(0, 0, False, r, False) for r in (low - 0.01, low, high - 0.01, high)] == [3, 4, 4, 5]
    prompt = judge_prompts.build_prompt("accuracy", GT, "x")
    assert f"below {low:.0%}" in prompt and f"at least {high:.0%}" in prompt
    assert judge_prompts.SCORE_RANGE == {"accuracy": (1, 5), "completeness": (1.0, 5.0), "clarity": (1.0, 5.0)}


def test_prompts_hold_the_ground_truth_and_the_instruction_verbatim():
    instruction = "Make the {gt_text} dress {instruction} pink."  # braces are not template fields
    for dimension in DIMENSIONS:
        prompt = judge_prompts.build_prompt(dimension, GT, instruction)
        assert instruction in prompt and "1. The dress colour changes from grey to pink." in prompt
        assert "[Secondary Changes]\n1. The gold necklace" in prompt and GT["overall"] in prompt
        assert f'{{"dimension": "{dimension}", "score": <' in prompt
        assert judge_prompts.PROMPT_VERSION[dimension].startswith(f"{dimension}-v1-")
    assert "(none)" in judge_prompts.gt_text({"primary_changes": [], "secondary_changes": [], "overall": ""})
    assert len(set(judge_prompts.PROMPT_VERSION.values())) == 3
    with pytest.raises(ValueError, match="unknown dimension"):
        judge_prompts.build_prompt("style", GT, "x")


# ---------------------------------------------------------------------------------------------- parsing

@pytest.mark.parametrize("dimension, text, score, kind", [
    ("accuracy", '{"dimension":"accuracy","score":4,"reasoning":"ok"}', 4.0, ""),
    ("accuracy", 'Step 1 ...\n```json\n{"dimension": "accuracy", "score": 5, "reasoning": "r"}\n```\nDone.', 5.0, ""),
    ("completeness", 'I think {"score": 1} at first; final: {"dimension": "completeness", "score": 4.5}', 4.5, ""),
    ("clarity", '{"dimension": "Clarity", "score": 2.5, "reasoning": "one forbidden term"}', 2.5, ""),
    ("clarity", "The instruction is clear. Score: 4", None, "no_json"),
    ("clarity", '{"dimension": "clarity", "score": 4', None, "no_json"),  # cut off
    ("clarity", '{"dimension": "clarity", "rating": 4}', None, "no_score"),
    ("accuracy", '{"dimension": "accuracy", "score": 6}', None, "out_of_range"),
    ("clarity", '{"dimension": "clarity", "score": 0.5}', None, "out_of_range"),
    ("accuracy", '{"dimension": "accuracy", "score": 3.5}', None, "invalid_score"),
    ("completeness", '{"dimension": "completeness", "score": 2.75}', None, "invalid_score"),
    ("accuracy", '{"dimension": "accuracy", "score": "4"}', None, "invalid_score"),
    ("accuracy", '{"dimension": "accuracy", "score": true}', None, "invalid_score"),
    ("accuracy", '{"dimension": "accuracy", "score": NaN}', None, "invalid_score"),
    ("accuracy", '{"dimension": "clarity", "score": 4}', None, "wrong_dimension"),
    ("accuracy", "", None, "no_json"),
])
def test_parse_reply(dimension, text, score, kind):
    result = parse_reply(dimension, text)
    assert (result.score, result.kind) == (score, kind)
    assert result.ok == (score is not None) and (result.ok or result.reason)


# ----------------------------------------------------------------------------------- the fault server

def test_valid_malformed_out_of_range_rate_limited_and_timed_out_replies(tmp_path):
    rows = items(6)
    p0, p1, p2, p3, p4, p5 = rows
    p4["instruction"] = "  "
    script = {
        key(p1, "accuracy"): [ok("The instruction is accurate, I would give it a 4.")],
        key(p1, "completeness"): [verdict("completeness", 7.0)],
        key(p2, "accuracy"): [rate_limited(0), verdict("accuracy", 3)],
        key(p2, "completeness"): [server_error(503), verdict("completeness", 2.0)],
        key(p2, "clarity"): [slow(1.5), verdict("clarity", 2.5)],
        key(p3, "accuracy"): [verdict("accuracy", 4.5)],
        key(p3, "completeness"): [verdict("completeness", 2.75)],
        key(p3, "clarity"): [verdict("accuracy", 4)],
        key(p5, "accuracy"): [slow(1.5), slow(1.5), verdict("accuracy", 2)],
    }
    cache = tmp_path / "judge.jsonl"
    valid = by_dimension({"accuracy": 5, "completeness": 4.5, "clarity": 4.0})
    with FaultServer(script, default=valid, key=judge_key) as server:
        judge = fast_judge(server, timeout=0.5, max_retries=1, cache_path=cache, price_per_million=(2.0, 8.0))
        table = judge.score(rows, progress=False)
        assert list(table.columns) == list(RESULT_COLUMNS) and list(table["id"]) == [r["id"] for r in rows]
        assert server.count() == 5 * 3 + 3 + 1  # p4 costs nothing; a 429, a 503, two timeouts retried
        assert server.count(key(p5, "accuracy")) == 2

        first = table.set_index("id")
        assert first.loc["p0", ["accuracy", "completeness", "clarity", "composite"]].tolist() == [5, 4.5, 4.0, 4.6]
        assert first.loc["p2", ["accuracy", "completeness", "clarity"]].tolist() == [3, 2.0, 2.5]
        assert first["ok"].tolist() == [True, False, True, False, False, False]
        for pid in ("p1", "p3", "p4", "p5"):  # a failure is NaN, never a stand-in score
            assert math.isnan(first.loc[pid, "composite"]) and first.loc[pid, "failure"]
        assert first.loc["p1", "clarity"] == 4.0 and math.isnan(first.loc["p1", "accuracy"])
        assert "accuracy: no_json" in first.loc["p1", "failure"] and "completeness: out_of_range" in first.loc["p1", "failure"]
        assert "accuracy: request_failed: timed out" in first.loc["p5", "failure"]

        report = judge.report()
        assert report["failure_kinds"] == {
            "accuracy": {"empty_instruction": 1, "invalid_score": 1, "no_json": 1, "request_failed": 1},
            "completeness": {"empty_instruction": 1, "invalid_score": 1, "out_of_range": 1},
            "clarity": {"empty_instruction": 1, "wrong_dimension": 1}}
        assert report["failures"] == {"accuracy": 4, "completeness": 3, "clarity": 2}
        assert (report["items"], report["items_ok"], report["requests"], report["attempts"]) == (6, 2, 15, 19)
        replies = 14  # answered with a body: 15 calls less the one that timed out twice
        assert (report["prompt_tokens"], report["completion_tokens"]) == (11 * replies, 7 * replies)
        assert report["cost_usd"] == pytest.approx((11 * replies * 2.0 + 7 * replies * 8.0) / 1e6)
        assert set(report["prompt_versions"]) == set(DIMENSIONS) and report["cached"] == 0

        # a rerun pays nothing again but the request that failed on timeouts; unparsable replies stay failures
        again = fast_judge(server, timeout=0.5, max_retries=1, cache_path=cache)
        second = again.score(rows, progress=False).set_index("id")
        assert server.count() == 5 * 3 + 3 + 1 + 1 and server.count(key(p5, "accuracy")) == 3
        assert second.loc["p5", "ok"] and second.loc["p5", "accuracy"] == 2
        assert second.drop(index="p5").fillna(-1).equals(first.drop(index="p5").fillna(-1))
        assert again.report()["cached"] == 14 and again.report()["requests"] == 1
        lines = [json.loads(line) for line in cache.read_text().splitlines()]
        assert len(lines) == 16 and {tuple(sorted(line)) for line in lines} == {tuple(sorted(lines[0]))}


def test_an_interrupted_run_never_asks_again_for_answered_replies(tmp_path):
    rows = items(4)
    rows[3] = {**rows[3], "source_image": str(tmp_path / "missing.png")}  # stops the run at the fourth pair
    cache = tmp_path / "judge.jsonl"
    valid = by_dimension({"accuracy": 4, "completeness": 3.0, "clarity": 5.0})
    with FaultServer(default=valid, key=judge_key) as server:
        with pytest.raises(RecordError, match="row p3, field 'source_image'"):
            fast_judge(server, cache_path=cache, max_workers=1, batch_size=1).score(rows, progress=False)
        assert server.count() == 9 and len(cache.read_text().splitlines()) == 9
        with cache.open("a") as handle:
            handle.write('{"judge": "openai:judge-model", "prompt_ver')  # a line cut by a kill
        rows[3] = items(4)[3]
        judge = fast_judge(server, cache_path=cache)
        table = judge.score(rows, progress=False)
        assert server.count() == 12 and all(server.count(key(rows[i], d)) == 1 for i in range(4) for d in DIMENSIONS)
        assert table["ok"].all() and judge.report()["cached"] == 9
        assert len([json.loads(line) for line in cache.read_text().splitlines()[-3:]]) == 3  # the cut line was closed


def test_cache_lines_are_keyed_by_judge_prompt_version_and_instruction(tmp_path):
    rows, cache = items(1), tmp_path / "judge.jsonl"
    valid = by_dimension({"accuracy": 4, "completeness": 3.0, "clarity": 5.0})
    with FaultServer(default=valid, key=judge_key) as server:
        fast_judge(server, cache_path=cache).score(rows, progress=False)
        fast_judge(server, cache_path=cache).score(rows, progress=False)
        assert server.count() == 3
        LLMJudge("another-judge", base_url=server.url, cache_path=cache).score(rows, progress=False)
        assert server.count() == 6
        fast_judge(server, cache_path=cache).score([{**rows[0], "instruction": "Turn the dress pink."}], progress=False)
        assert server.count() == 9
        line = next(x for x in map(json.loads, cache.read_text().splitlines()) if x["dimension"] == "accuracy")
        assert line["judge"] == "openai:judge-model" and line["prompt_version"] == judge_prompts.PROMPT_VERSION["accuracy"]
        assert line["instruction_sha256"] == hashlib.sha256(rows[0]["instruction"].encode()).hexdigest()
    (tmp_path / "other.jsonl").write_text('{"id": "p0", "instruction": "x"}\n')
    with pytest.raises(RecordError, match="other.jsonl.*row 1"):
        LLMJudge("m", base_url="http://127.0.0.1:9/v1", cache_path=tmp_path / "other.jsonl").score(rows, progress=False)


def test_the_api_key_never_lands_in_the_cache_results_or_report(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITCAPTION_JUDGE_TEST_KEY", SECRET)
    rows, cache = items(2), tmp_path / "judge.jsonl"

    def echo_error(request):  # a server that quotes the key in its error, as some do
        return Reply(401, {"error": {"message": f"bad key {request['headers']['authorization']}"}})

    def echo_reply(request):  # a model that repeats the key in its reasoning
        return ok(json.dumps({"dimension": "clarity", "score": 3.0, "reasoning": f"the header said {SECRET}"}))

    script = {key(rows[0], "accuracy"): [echo_error], key(rows[0], "clarity"): [echo_reply]}
    with FaultServer(script, default=by_dimension({"accuracy": 4, "completeness": 3.0, "clarity": 5.0}),
                     key=judge_key) as server:
        judge = fast_judge(server, api_key_env="EDITCAPTION_JUDGE_TEST_KEY", cache_path=cache)
        table = judge.score(rows, progress=False)
        assert {r["headers"]["authorization"] for r in server.requests} == {f"Bearer {SECRET}"}
    assert "HTTP 401" in table.loc[0, "failure"] and table.loc[0, "clarity"] == 3.0
    for text in (cache.read_text(), table.to_csv(), json.dumps(judge.report()), json.dumps(judge.details), repr(judge)):
        assert SECRET not in text and SECRET[:20] not in text
    assert "***" in cache.read_text()


def test_keys_come_from_the_environment_and_bad_settings_are_named(monkeypatch):
    monkeypatch.delenv("EDITCAPTION_NO_SUCH_KEY", raising=False)
    with pytest.raises(ValueError, match="EDITCAPTION_NO_SUCH_KEY"):
        LLMJudge("gpt-4.1", base_url="https://api.openai.com/v1", api_key_env="EDITCAPTION_NO_SUCH_KEY")
    with pytest.raises(TypeError):
        LLMJudge("gpt-4.1", base_url="https://api.openai.com/v1", api_key=SECRET)
    with pytest.raises(ValueError, match="base_url"):
        LLMJudge("gpt-4.1")
    with pytest.raises(ValueError, match="unknown judge backend"):
        LLMJudge("m", backend="claude")
    with pytest.raises(ValueError, match="unknown judge"):
        make_judge("gemini-2.5-pro")
    judge = make_judge("openai:gemini-2.5-pro", base_url="http://127.0.0.1:9/v1")
    assert judge.name == "openai:gemini-2.5-pro" and judge.report()["requests"] == 0


def test_items_are_checked_before_any_request():
    with FaultServer(key=judge_key) as server:
        judge = fast_judge(server)
        with pytest.raises(RecordError, match="row p1, field 'gt'"):
            judge.score([items(2)[0], {k: v for k, v in items(2)[1].items() if k != "gt"}], progress=False)
        with pytest.raises(RecordError, match="row p0, field 'id'"):
            judge.score(items(1) * 2, progress=False)
        assert server.count() == 0


def test_the_rule_judge_behind_the_same_interface():
    pairs = generate_pairs(3, seed=0, size=64, progress=False).to_list()
    rows = [{**p, "instruction": p["instruction"]} for p in pairs]
    rows.append({"id": "no-changes", "instruction": "Turn the square red.", "changes": []})
    judge = make_judge("rule", cache_path="ignored")
    table = judge.score(rows, progress=False)
    for pair, (_, row) in zip(pairs, table.iloc[:3].iterrows()):
        expected = RuleJudge().score(pair["changes"], pair["instruction"])
        assert [row[d] for d in (*DIMENSIONS, "composite")] == [expected[d] for d in (*DIMENSIONS, "composite")]
    assert not table.iloc[3]["ok"] and "no_changes" in table.iloc[3]["failure"]
    assert judge.report()["failures"] == {d: 1 for d in DIMENSIONS} and judge.report()["requests"] == 0


def test_read_instructions_names_file_line_and_field(tmp_path):
    path = tmp_path / "instructions.jsonl"
    path.write_text('{"id": "a", "instruction": "Turn it red."}\n\nnot json\n{"id": "b"}\n{"id": "zz", "instruction": "x"}\n'
                    '{"id": "a", "instruction": "again"}\n{"id": "c", "instruction": " "}\n')
    with pytest.raises(RecordError, match=r"instructions.jsonl.*row 3"):
        read_instructions(path, ["a", "b", "c"])
    found, problems = read_instructions(path, ["a", "b", "c"], on_error="count")
    assert found == {"a": "Turn it red."}
    assert problems == {"bad_json": [3], "missing_field": [4], "unknown_id": [5], "duplicate_id": [6],
                        "empty_instruction": [7]}


# ------------------------------------------------------------------------------ the tiny model, locally

@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0)


def test_a_local_transformers_judge_counts_what_does_not_parse(tiny_dir, tmp_path):
    pairs = generate_pairs(1, seed=0, size=64, progress=False).to_list()
    judge = make_judge(f"transformers:{tiny_dir}", max_new_tokens=8, cache_path=tmp_path / "judge.jsonl")
    table = judge.score(pairs, progress=False)
    report = judge.report()
    assert report["requests"] == 3 and report["judge"] == f"transformers:{tiny_dir}"
    details = judge.details[0]
    for d in DIMENSIONS:  # random weights: any reply is either a valid score or a counted failure
        assert (details[d]["score"] is not None) != (details[d]["kind"] in FAILURE_KINDS)
    assert sum(report["failures"].values()) == sum(details[d]["score"] is None for d in DIMENSIONS)
    again = make_judge(f"transformers:{tiny_dir}", max_new_tokens=8, cache_path=tmp_path / "judge.jsonl")
    assert again.score(pairs, progress=False).fillna(-1).equals(table.fillna(-1))
    assert again.report()["requests"] == 0 and again.report()["cached"] == 3


# ------------------------------------------------------------------------ a real transformers serve

@pytest.fixture(scope="module")
def served(tiny_dir, tmp_path_factory):
    """`transformers serve` of the tiny Qwen3-VL on 127.0.0.1: (base_url, model name, log path)."""
    with transformers_serve(tiny_dir, tmp_path_factory.mktemp("serve")) as (base_url, log_path, started):
        yield base_url, str(tiny_dir), log_path


def _posts(log_path, at_least: int = 0) -> int:
    deadline = time.perf_counter() + 3
    while True:
        count = log_path.read_text().count('"POST /v1/chat/completions')
        if count >= at_least or time.perf_counter() > deadline:
            return count
        time.sleep(0.05)


@pytest.mark.slow
def test_against_transformers_serve_failures_are_counted_and_a_rerun_pays_nothing(served, tmp_path):
    base_url, model, log_path = served
    pairs = generate_pairs(2, seed=1, size=64, progress=False).to_list()
    cache = tmp_path / "judge.jsonl"
    before = _posts(log_path)
    judge = make_judge(f"openai:{model}", base_url=base_url, max_new_tokens=24, max_workers=2, cache_path=cache,
                       price_per_million=(1.0, 1.0))
    table = judge.score(pairs, progress=False)
    report = judge.report()
    assert _posts(log_path, before + 6) == before + 6 and report["requests"] == 6
    n_failed = sum(detail[d]["score"] is None for detail in judge.details for d in DIMENSIONS)
    assert sum(report["failures"].values()) == n_failed and n_failed >= 1  # a random tiny model rarely writes the JSON
    assert all(kind in FAILURE_KINDS for kinds in report["failure_kinds"].values() for kind in kinds)
    assert report["prompt_tokens"] > 0 and report["cost_usd"] > 0
    assert (~table["ok"]).sum() == sum(any(detail[d]["score"] is None for d in DIMENSIONS) for detail in judge.details)
    again = make_judge(f"openai:{model}", base_url=base_url, max_new_tokens=24, cache_path=cache)
    assert again.score(pairs, progress=False).fillna(-1).equals(table.fillna(-1))
    assert _posts(log_path, before + 7) == before + 6 and again.report()["cached"] == 6


# ------------------------------------------------------------------------------------ the command line

def _cli(*args) -> list[str]:
    return [str(Path(sys.executable).parent / "editcaption"), "score", "--judge", "openai", *args]


@pytest.mark.slow
def test_the_score_command_killed_mid_run_resumes_without_repeating_a_request(tmp_path):
    pairs = generate_pairs(4, seed=2, size=64, progress=False)
    records.save_pairs(pairs, tmp_path / "pairs")
    instructions = tmp_path / "instructions.jsonl"
    instructions.write_text("".join(json.dumps({"id": p, "instruction": t}) + "\n"
                                    for p, t in zip(pairs["id"], pairs["instruction"])))
    out, cache = tmp_path / "scores.jsonl", tmp_path / "scores.judge_cache.jsonl"
    hold_at, answered = 5, {}  # the sixth request is never answered: the process is killed while it waits

    def reply(request):
        with lock:
            n = len(answered)
            answered[n] = request["key"]
        if n == hold_at:
            return slow(60, verdict("accuracy", 1))
        return by_dimension({"accuracy": 4, "completeness": 3.0, "clarity": 4.0})(request)

    lock = threading.Lock()
    env = {**os.environ, "EDITCAPTION_JUDGE_TEST_KEY": SECRET, "OMP_NUM_THREADS": "1"}
    with FaultServer(default=reply, key=lambda body: f"{first_image_url(body)}|{prompt_text(body)}") as server:
        args = _cli("--model", "judge-model", "--base-url", server.url, "--api-key-env", "EDITCAPTION_JUDGE_TEST_KEY",
                    "--pairs", str(tmp_path / "pairs"), "--instructions", str(instructions), "--out", str(out),
                    "--workers", "1", "--no-progress")
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        deadline = time.perf_counter() + 120
        while not (server.count() == hold_at + 1 and cache.exists() and len(cache.read_text().splitlines()) == hold_at):
            assert process.poll() is None and time.perf_counter() < deadline, process.communicate()
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        first_keys = [r["key"] for r in server.requests]
        assert not out.exists() and len(set(first_keys)) == hold_at + 1

        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=120)
        assert proc.returncode == 0, proc.stderr[-3000:]
        second_keys = [r["key"] for r in server.requests[hold_at + 1:]]
        assert len(second_keys) == 4 * 3 - hold_at  # only the unanswered calls, the held one included
        assert not set(second_keys) & set(first_keys[:hold_at])  # zero answered requests repeated
        assert len(set(first_keys[:hold_at] + second_keys)) == 12
    summary = json.loads(proc.stdout)
    assert summary["n"] == summary["n_ok"] == 4 and summary["composite"] == pytest.approx(0.4 * 4 + 0.4 * 3 + 0.2 * 4)
    assert summary["judge"]["cached"] == hold_at and summary["judge"]["requests"] == 12 - hold_at
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == list(pairs["id"]) and rows[0]["accuracy_reasoning"] == "checked"
    assert out.with_suffix(".csv").exists() and json.loads((tmp_path / "scores.summary.json").read_text())["n"] == 4
    for path in tmp_path.iterdir():
        assert path.is_dir() or SECRET not in path.read_text(errors="ignore")


def test_a_pairs_dataset_is_scored_directly(tmp_path):
    pairs = generate_pairs(2, seed=3, size=64, progress=False)  # its instruction column is the reference
    with FaultServer(default=by_dimension({"accuracy": 5, "completeness": 5.0, "clarity": 4.5}), key=judge_key) as server:
        table = fast_judge(server).score(pairs, progress=False)
        assert server.count() == 6 and table["ok"].all() and list(table["id"]) == list(pairs["id"])
        assert {first_image_url(r["body"]) for r in server.requests} == {image_data_url(im) for im in pairs["source_image"]}
    assert make_judge("rule").score(pairs, progress=False)["composite"].tolist() == [
        RuleJudge().score(p["changes"], p["instruction"])["composite"] for p in pairs]
