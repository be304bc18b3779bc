"""Automatic evaluation on small in-memory inputs: external instruction files, judging, paired tests, agreement,
tables and figures."""
import json
import math

import numpy as np
import pandas as pd
import pytest

from editcaption import records
from editcaption.world.synthetic import generate_pairs
from editcaption.eval import automatic, stats
from editcaption.eval.automatic import Benchmark
from editcaption.records import RecordError
from editcaption.reporting import eval_figures, eval_tables


@pytest.fixture(scope="module")
def synthetic():
    return Benchmark("synthetic", generate_pairs(10, seed=5, size=64, progress=False), "memory")


@pytest.fixture(scope="module")
def textual(synthetic):
    """The same pairs with text ground truth only, as a real benchmark has."""
    pairs = synthetic.pairs.map(lambda row: {"id": "real-" + row["id"], "changes": []})
    return Benchmark("bm-bench", pairs, "memory")


class FakeJudge:
    """An LLM-judge stand-in with the llm_judge interface: scores from the instruction length; fails on "fail"."""

    name = "fake:judge"

    def __init__(self):
        self.calls = 0

    def score(self, items, *, progress=True):
        rows = []
        for item in items:
            self.calls += 1
            assert {"id", "source_image", "target_image", "gt", "instruction"} <= set(item)
            if "fail" in item["instruction"]:
                rows.append({"id": item["id"], "instruction": item["instruction"], "accuracy": math.nan,
                             "completeness": math.nan, "clarity": math.nan, "composite": math.nan, "ok": False,
                             "failure": "accuracy: unparseable reply"})
                continue
            score = float(min(5, len(item["instruction"].split())))
            rows.append({"id": item["id"], "instruction": item["instruction"], "accuracy": score, "completeness": score,
                         "clarity": score, "composite": score, "ok": True, "failure": ""})
        return pd.DataFrame(rows)

    def report(self):
        return {"requests": self.calls, "cost_usd": 0.0}


def _write_lines(path, lines):
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_instruction_file_problems_are_counted_with_file_and_line(tmp_path, synthetic, textual):
    sid, rid = synthetic.ids, textual.ids
    path = _write_lines(tmp_path / "gem.jsonl", [
        {"id": sid[0], "instruction": "Add a red star."},
        "not json",
        {"id": sid[1]},
        {"id": "nope-1", "instruction": "x"},
        {"id": sid[0], "instruction": "again"},
        ["a list"],
        {"id": sid[2], "instruction": ""},
        "",
    ])
    used, report = automatic.read_instruction_file(path, {"synthetic": sid, "bm-bench": rid})
    assert used == {"synthetic": {sid[0]: "Add a red star.", sid[2]: ""}}
    assert report["lines"] == 7 and report["used"] == {"synthetic": 2} and report["empty_instructions"] == 1
    assert report["problems"] == {"not a JSON line": 1, "no string 'instruction'": 1,
                                  "id not in any evaluated benchmark": 1, "duplicate id (first line kept)": 1,
                                  "not a JSON object": 1}
    assert [(p["line"], p["id"]) for p in report["problem_lines"]] == [(2, None), (3, sid[1]), (4, "nope-1"),
                                                                       (5, sid[0]), (6, None)]
    assert all(p["file"] == str(path) for p in report["problem_lines"])
    assert report["missing"] == {"synthetic": {"n": 8, "first": sid[1:2] + sid[3:]}}
    assert report["not_covered"] == ["bm-bench"]


def test_a_file_with_nothing_usable_is_an_error_naming_it(tmp_path, synthetic):
    path = _write_lines(tmp_path / "other.jsonl", [{"id": "hq-edit-3", "instruction": "x"}])
    with pytest.raises(RecordError, match=r"other.jsonl.*id not in any evaluated benchmark"):
        automatic.read_instruction_file(path, {"synthetic": synthetic.ids})


def test_parse_external(tmp_path):
    a = _write_lines(tmp_path / "a.jsonl", [])
    assert automatic.parse_external(f" gemini={a} , ") == {"gemini": a}
    with pytest.raises(ValueError, match="not name=path"):
        automatic.parse_external(str(a))
    with pytest.raises(ValueError, match="'SFT'"):
        automatic.parse_external(f"SFT={a}")
    with pytest.raises(ValueError, match="used twice"):
        automatic.parse_external(f"g={a},g={a}")
    with pytest.raises(RecordError, match="missing.jsonl"):
        automatic.parse_external(f"g={tmp_path / 'missing.jsonl'}")


def test_rule_scores_synthetic_only_and_real_benchmarks_are_recorded_unscored(synthetic, textual):
    texts = {"synthetic": {"sft": dict(zip(synthetic.ids, synthetic.pairs["instruction"]))},
             "bm-bench": {"sft": {pid: "move it" for pid in textual.ids}}}
    benchmarks = {"synthetic": synthetic, "bm-bench": textual}
    scores, unscored, _ = automatic.score_all(benchmarks, texts, [automatic.RULE], progress=False)
    assert set(scores["benchmark"]) == {"synthetic"} and len(scores) == 10
    assert scores["composite"].min() == pytest.approx(5.0) and scores["ok"].all()
    assert "needs an LLM judge" in unscored["bm-bench"]


def test_llm_judge_failures_are_kept_and_counted(synthetic, textual):
    judge = FakeJudge()
    texts = {"synthetic": {"ext": {synthetic.ids[0]: "add a red star now please", synthetic.ids[1]: "fail"}},
             "bm-bench": {"ext": {pid: "one two" for pid in textual.ids}}}
    scores, unscored, seconds = automatic.score_all({"synthetic": synthetic, "bm-bench": textual}, texts,
                                                    [automatic.RULE, judge], progress=False)
    assert not unscored and set(seconds) == {"rule", "fake:judge"}
    assert set(zip(scores["benchmark"], scores["judge"])) == {("synthetic", "rule"), ("synthetic", "fake:judge"),
                                                              ("bm-bench", "fake:judge")}
    llm = scores[(scores["benchmark"] == "synthetic") & (scores["judge"] == "fake:judge")]
    assert list(llm["ok"]) == [True, False] and llm["category"].tolist() == synthetic.pairs["category"][:2]
    summaries = automatic.summarize_all(scores, seed=0, n_boot=200)
    s = summaries["synthetic"]["ext"]["fake:judge"]
    assert (s["n"], s["n_scored"], s["failures"]) == (2, 1, 1) and s["S"] == 5.0
    assert s["failure_reasons"] == {"accuracy: unparseable reply": 1}
    bm = summaries["bm-bench"]["ext"]["fake:judge"]
    assert bm["S"] == 2.0 and set(bm["by_edit_type"]) == set(textual.pairs["edit_type"])


def _scores(values: dict[str, list[float]], ok: dict[str, list[bool]] | None = None, judge="rule"):
    rows = []
    for source, column in values.items():
        for i, v in enumerate(column):
            rows.append({"benchmark": "synthetic", "source": source, "judge": judge, "id": f"p{i}", "category": "semantic",
                         "edit_type": "color", "accuracy": v, "completeness": v, "clarity": v, "composite": v,
                         "ok": (ok or {}).get(source, [True] * len(column))[i], "failure": ""})
    return pd.DataFrame(rows)


def test_adjacent_paired_tests_use_the_rows_present_and_the_items_both_scored():
    rng = np.random.default_rng(0)
    base = rng.uniform(1, 4, 40)
    scores = _scores({"sft": base, "dpo": base + 0.5, "hae": base + 0.5},
                     ok={"dpo": [i % 4 != 0 for i in range(40)]})
    tests = automatic.adjacent_paired_tests(scores, ["sft", "dpo", "st_only", "hae"], table="table4", n_boot=500)
    assert [(t["a"], t["b"], t["n"]) for t in tests] == [("SFT", "DPO", 30), ("DPO", "HAE-DPO", 30)]
    assert tests[0]["diff"] == pytest.approx(0.5) and tests[0]["p_value"] < 0.01 and tests[0]["low"] > 0
    assert tests[1]["diff"] == pytest.approx(0.0) and tests[1]["table"] == "table4"


def test_spearman_by_hand_and_judge_agreement():
    assert stats.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ties: ranks (1.5, 1.5, 3, 4) against (1, 2, 3, 4)
    assert stats.spearman([1, 1, 2, 3], [1, 2, 3, 4]) == pytest.approx(np.corrcoef([1.5, 1.5, 3, 4], [1, 2, 3, 4])[0, 1])
    assert math.isnan(stats.spearman([1, 1], [1, 2]))
    rule = _scores({"sft": [1.0, 2.0, 3.0, 4.0]})
    llm = _scores({"sft": [2.0, 1.0, 4.0, 5.0]}, ok={"sft": [True, True, True, False]}, judge="fake:judge")
    [row] = automatic.judge_agreement(pd.concat([rule, llm]))
    assert row["kind"] == "rule vs LLM" and row["n"] == 3
    assert row["spearman_S"] == pytest.approx(0.5) and row["mean_abs_diff_S"] == pytest.approx(1.0)


def test_tables_3_and_4_are_written_with_cis_and_delta(tmp_path):
    scores = _scores({"sft": [3.0, 3.5, 4.0, 2.0], "dpo": [3.5, 3.5, 4.0, 2.5], "hae": [4.0, 4.0, 4.5, 3.0],
                      "gem": [4.5, 4.5, 4.5, 4.5]})
    summaries = automatic.summarize_all(scores, n_boot=200)
    order3, order4 = automatic.table_orders(["gem", "sft", "dpo", "hae"])
    assert order3 == ["gem", "sft", "dpo", "hae"] and order4 == ["sft", "dpo", "hae"]
    written = eval_tables.write_tables(summaries, tmp_path, table3_order=order3, table4_order=order4)
    long3 = pd.read_csv(tmp_path / "table3_long.csv")
    assert tuple(long3.columns) == records.LONG_COLUMNS and set(long3["metric"]) == {"S", "Acc", "Comp", "Clar"}
    assert list(dict.fromkeys(long3["model"])) == ["gem", "SFT", "DPO", "HAE-DPO"]
    assert set(long3["data"]) == {"synthetic-test n=4"} and set(long3["judge"]) == {"rule"}
    table4 = pd.read_csv(tmp_path / "table4.csv", index_col=0, dtype=str)
    assert table4.loc["HAE-DPO", "Δ S"] == "+0.500" and table4.loc["DPO", "Δ S"] == "+0.000"
    assert table4.loc["SFT", "S"].startswith("3.125 [")
    assert "HAE-DPO" in (tmp_path / "table4.md").read_text() and r"\toprule" in (tmp_path / "table4.tex").read_text()
    assert set(written) == {"table3", "table4"}
    fig = eval_figures.plot_score_bars(written["table3"]["rows"], save=tmp_path / "bars.png")
    assert (tmp_path / "bars.png").stat().st_size > 0 and len(fig.axes) == 1
    eval_figures.plot_group_scores(scores, "category", save=tmp_path / "groups.png")
    eval_figures.plot_judge_scatter(pd.concat([scores, scores.assign(judge="x")]), "rule", "x", save=tmp_path / "sc.png")
    assert (tmp_path / "groups.png").exists() and (tmp_path / "sc.png").exists()
    assert (tmp_path / "groups.pdf").read_bytes().startswith(b"%PDF")  # every figure also as PDF


def test_write_instruction_files(tmp_path):
    written = automatic.write_instruction_files({"hq-edit": {"sft": {"a": "Add x.", "b": ""}}}, tmp_path)
    assert written == [tmp_path / "hq-edit" / "sft.jsonl"]
    lines = [json.loads(line) for line in written[0].read_text().splitlines()]
    assert lines == [{"id": "a", "instruction": "Add x."}, {"id": "b", "instruction": ""}]
