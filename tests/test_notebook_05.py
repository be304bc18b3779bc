"""Notebook 05 under the smoke profile after 01-04 (as `editcaption run --profile smoke --only 01,02,03,04,05`):
our checkpoints and an external file on the synthetic split and a ByteMorph-Bench fixture; then against a local
OpenAI-compatible judge with a fake API key that must appear nowhere under the run's outputs."""
import json
import re
import shutil
import zlib

import pandas as pd
import pytest
import yaml
from fault_server import FaultServer, Reply, completion, prompt_text
from fixtures_loaders import BM_BENCH_FEATURES, BM_BENCH_ROWS, HQ_EDIT_FEATURES, HQ_EDIT_ROWS, write_hub_parquet

from editcaption import config, runner
from editcaption.data.loaders import BM_BENCH_EDIT_TYPES
from editcaption.eval.judge_prompts import COMPLETENESS_VALUES, SCORE_RANGE
from editcaption.records import load_pairs
from editcaption.records import LONG_COLUMNS

STAGE = "05_automatic_evaluation"
FAKE_KEY = "sk-FAKE-KEY-DO-NOT-LEAK-123"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, smoke_run):
    """Notebooks 01-04 of the shared smoke run (tests/conftest.py) as `up`, and ByteMorph-Bench and HQ-Edit parquet
    folders in the public schemas."""
    root = tmp_path_factory.mktemp("nb05")
    shared, results = smoke_run
    assert [r.status for r in results[:4]] == ["ok"] * 4
    (root / "up").symlink_to(shared, target_is_directory=True)  # read only: each test copies it before running 05
    bm = write_hub_parquet(root / "bm-bench" / "test-00000.parquet", BM_BENCH_ROWS, BM_BENCH_FEATURES)
    write_hub_parquet(root / "hq-edit" / "train-00000.parquet", HQ_EDIT_ROWS, HQ_EDIT_FEATURES)
    return root, bm.parent


def _run_05(root, run_name, **params):
    """Notebook 05 on a copy of the upstream run, with the smoke profile plus `params`."""
    if not (root / run_name).exists():
        shutil.copytree(root / "up", root / run_name, ignore=shutil.ignore_patterns(STAGE, "06_*", "07_*", "08_*", "html", "*.ipynb"))
    profile = {**config.load_profile("smoke"), **params}
    path = root / f"{run_name}.yaml"
    path.write_text(yaml.safe_dump(profile))
    results = runner.run_profile(str(path), only="05", run_name=run_name, output_root=str(root), progress=False)
    assert [r.status for r in results] == ["ok"]
    stage = root / run_name / STAGE
    return stage, json.loads((stage / "metrics.json").read_text())


@pytest.mark.slow
def test_smoke_05_scores_our_models_and_an_external_file(upstream):
    root, bm_dir = upstream
    test_ids = load_pairs(root / "up" / "01_dataset_construction" / "test_pairs")["id"]
    reference = dict(zip(test_ids, load_pairs(root / "up" / "01_dataset_construction" / "test_pairs")["instruction"]))
    external = root / "gold.jsonl"
    lines = [json.dumps({"id": pid, "instruction": reference[pid]}) for pid in test_ids[:-2]]
    lines += ["{broken", json.dumps({"id": "no-such-pair", "instruction": "x"})]
    external.write_text("\n".join(lines) + "\n")
    stage, metrics = _run_05(root, "ext", external_instructions=f"gold={external}", bm_bench_path=str(bm_dir),
                             hq_edit_path=str(root / "hq-edit"), hq_edit_n=4)

    assert metrics["skipped_benchmarks"] == {"own": "no path given"}
    assert set(metrics["unscored_benchmarks"]) == {"bm-bench", "hq-edit"}
    assert "needs an LLM judge" in metrics["unscored_benchmarks"]["bm-bench"]
    assert metrics["benchmarks"]["hq-edit"]["load_report"]["sample"] == {"n": 4, "seed": 0}
    assert metrics["benchmarks"]["synthetic"]["n"] == 24 and metrics["benchmarks"]["bm-bench"]["n"] == 5
    assert metrics["sources"] == ["gold", "base", "sft", "nll_only", "dpo", "const", "hae"]  # the smoke run trains both controls
    assert set(metrics["unavailable_sources"]) == {"st_only", "h_only"}
    ext = metrics["external"]["gold"]
    assert ext["used"] == {"synthetic": 22} and ext["missing"]["synthetic"]["n"] == 2
    assert ext["problems"] == {"not a JSON line": 1, "id not in any evaluated benchmark": 1}
    assert [p["line"] for p in ext["problem_lines"]] == [23, 24] and ext["not_covered"] == ["hq-edit", "bm-bench"]

    results = metrics["results"]["synthetic"]
    assert set(results) == {"gold", "base", "sft", "nll_only", "dpo", "const", "hae"}
    assert results["gold"]["rule"]["n"] == 22 and results["gold"]["rule"]["S"] == pytest.approx(5.0)
    for source in ("base", "sft", "nll_only", "dpo", "const", "hae"):
        s = results[source]["rule"]
        assert s["n"] == 24 and s["failures"] == 0 and s["S_ci"][0] <= s["S"] <= s["S_ci"][1]
        assert set(s["by_category"]) <= {"semantic", "stylistic", "structural"}
    tests = {(t["table"], t["a"], t["b"]): t for t in metrics["paired_tests"]}
    nll, const = "NLL only (control)", "DPO, constant margin (control)"
    assert set(tests) == {("table3", "gold", "base"), ("table3", "base", "SFT"), ("table3", "SFT", "DPO"),
                          ("table3", "DPO", "HAE-DPO"), ("table4", "SFT", nll), ("table4", nll, "DPO"),
                          ("table4", "DPO", "HAE-DPO"), ("table4", "HAE-DPO", const)}
    assert tests[("table3", "gold", "base")]["n"] == 22 and tests[("table4", "DPO", "HAE-DPO")]["n"] == 24
    assert metrics["agreement"] == [] and metrics["judges"] == ["rule"] and metrics["wall_seconds"] > 0

    targeted = metrics["targeted"]  # the per-mode subsets of notebook 01, every model, paired tests
    assert targeted["n"] == {"orientation": 8, "viewpoint": 8, "detail": 8}
    variants = ("dpo", "hae", "const", "nll_only")
    models = ("base", "SFT", *variants, *(f"{v}_seed1" for v in variants))  # the shared run trains seeds 0 and 1
    assert set(targeted["models"]) == set(models)
    assert {(r["model"], r["subset"]) for r in targeted["rates"] if r["measure"] == "p0"} == {
        (m, s) for m in models for s in ("orientation", "viewpoint", "detail", "all")}
    compared = {("base", "SFT"), ("SFT", "dpo"), ("SFT", "hae"), ("dpo", "hae"), ("SFT", "nll_only"), ("nll_only", "dpo"),
                ("dpo", "const"), ("const", "hae")}
    assert {(t["a"], t["b"]) for t in targeted["paired_tests"]} == compared
    assert all(t["test"].startswith("McNemar") and 0 <= t["p_value"] <= 1 for t in targeted["paired_tests"])
    assert {r["variant"] for r in targeted["seeded"]} == set(variants) and len(targeted["summary"]) == 4 * len(compared)
    # table 2's measures per model and subset, over seeds, and compared pair by pair
    assert {(r["model"], r["subset"]) for r in targeted["table2"]} == {
        (m, s) for m in models for s in ("orientation", "viewpoint", "detail", "all")}
    row = next(r for r in targeted["table2"] if r["model"] == "SFT" and r["subset"] == "all")
    assert row["Correct"] + row["P0"] + row["P1"] + row["P2"] == pytest.approx(1.0) and row["Words"] >= 0
    assert {r["variant"] for r in targeted["table4"]} == set(variants) and all(r["seeds"] == 2 for r in targeted["table4"])
    assert {r["measure"] for r in targeted["measure_tests"]} >= {"correct", "p0", "p1", "p2", "multi_clause", "unsupported"}
    assert (stage / "table2_targeted.csv").exists() and (stage / "table4_targeted.csv").exists()

    for stem in ("table3", "table4"):
        long = pd.read_csv(stage / f"{stem}_long.csv")
        assert tuple(long.columns) == LONG_COLUMNS and set(long["metric"]) == {"S", "Acc", "Comp", "Clar"}
        assert (long["low"] <= long["value"]).all() and (long["value"] <= long["high"]).all()
        for ext_name in ("csv", "md", "tex"):
            assert (stage / f"{stem}.{ext_name}").stat().st_size > 0
    table4 = pd.read_csv(stage / "table4.csv", index_col=0, dtype=str)
    assert list(table4.index) == ["SFT", nll, "DPO", "HAE-DPO", const] and table4.loc["DPO", "Δ S"] == "+0.000"
    assert re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", table4.loc["SFT", "S"])
    for bench, n in (("synthetic", 24), ("bm-bench", 5), ("hq-edit", 4)):
        for source in ("base", "sft", "dpo", "hae"):
            assert len((stage / "instructions" / bench / f"{source}.jsonl").read_text().splitlines()) == n
    assert len((stage / "instructions" / "synthetic" / "gold.jsonl").read_text().splitlines()) == 22
    for figure in metrics["figures"]:
        assert (stage / figure).exists(), figure
    assert "by_category_synthetic_rule.png" in metrics["figures"]


def _judge_reply(request: dict) -> Reply:
    """A valid appendix-B reply for the dimension the prompt asks about, its score drawn from the prompt; one
    reply in five echoes the request's Authorization header (a careless proxy) to test that it is scrubbed."""
    text = prompt_text(request["body"])
    dimension = re.search(r'"dimension": "(\w+)"', text).group(1)
    h = zlib.crc32(text.encode())
    low, high = SCORE_RANGE[dimension]
    if dimension == "accuracy":
        score = int(low + h % int(high - low + 1))
    elif dimension == "completeness":
        score = COMPLETENESS_VALUES[h % len(COMPLETENESS_VALUES)]
    else:
        score = low + 0.5 * (h % int(2 * (high - low) + 1))
    reasoning = f"seen {request['headers'].get('authorization', '')}" if h % 5 == 0 else "fine"
    return Reply(200, completion(json.dumps({"dimension": dimension, "score": score, "reasoning": reasoning})))


@pytest.mark.slow
def test_05_with_an_llm_judge_never_writes_the_api_key(upstream, monkeypatch):
    root, bm_dir = upstream
    monkeypatch.setenv("OPENAI_API_KEY", FAKE_KEY)
    with FaultServer(default=_judge_reply) as server:
        params = dict(judges="rule,openai:fake-judge", judge_base_url=server.url, eval_sources="sft,hae",
                      bm_bench_path=str(bm_dir), n_bootstrap=500)
        stage, metrics = _run_05(root, "key", **params)
        sent = server.count()
        assert sent > 0 and all(r["headers"].get("authorization") == f"Bearer {FAKE_KEY}" for r in server.requests)
        _, again = _run_05(root, "key", **params)  # a rerun reads every reply from the judge cache
        assert server.count() == sent and again["judge_reports"]["openai:fake-judge"]["requests"] == 0

    report = metrics["judge_reports"]["openai:fake-judge"]
    # 3 dimensions x 2 sources x 29 pairs; an instruction both models wrote for a pair is judged once
    assert report["requests"] == sent and report["requests"] + report["cached"] == 3 * 2 * (24 + 5)
    assert sum(report["failures"].values()) == 0 and report["prompt_tokens"] == 11 * sent
    assert metrics["unscored_benchmarks"] == {}
    bm = metrics["results"]["bm-bench"]["hae"]["openai:fake-judge"]
    assert bm["n_scored"] == 5 and set(bm["by_edit_type"]) == set(BM_BENCH_EDIT_TYPES)
    assert set(metrics["results"]["synthetic"]["sft"]) == {"rule", "openai:fake-judge"}
    [agreement] = metrics["agreement"]
    assert agreement["kind"] == "rule vs LLM" and agreement["n"] == 2 * 24
    table3 = pd.read_csv(stage / "table3.csv", index_col=0, dtype=str)
    assert "synthetic [rule] S" in table3.columns and "synthetic [openai:fake-judge] S" in table3.columns
    assert "bm-bench S" in table3.columns

    leaks = [str(p) for p in (root / "key").rglob("*") if p.is_file() and FAKE_KEY.encode() in p.read_bytes()]
    assert not leaks, f"the API key was written to {leaks}"
    assert (stage / "judge_cache").is_dir() and any((stage / "judge_cache").iterdir())
