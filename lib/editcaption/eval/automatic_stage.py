"""Notebook 05's steps around `automatic` and `targeted`: load the benchmarks a run names, report the sources and
the judges' coverage, and assemble what the stage records."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from editcaption.eval import automatic, targeted


def load_stage_benchmarks(test_pairs: str | Path, *, n_synthetic: int, hq_edit_path: str, hq_edit_n: int,
                          bm_bench_path: str, bm_bench_n: int, own_pairs_path: str, own_pairs_n: int, seed: int,
                          on_error: str):
    """(benchmark name -> `automatic.Benchmark`, name -> why it was skipped): the run's synthetic test split and
    every benchmark whose location is set; one line printed per benchmark."""
    benchmarks, skipped = automatic.load_benchmarks(
        {"synthetic": str(test_pairs), "hq-edit": hq_edit_path, "bm-bench": bm_bench_path, "own": own_pairs_path},
        {"synthetic": n_synthetic, "hq-edit": hq_edit_n, "bm-bench": bm_bench_n, "own": own_pairs_n},
        seed=seed, on_error=on_error)
    for name, bench in benchmarks.items():
        print(f"{name}: {len(bench.pairs)} pairs from {bench.origin}")
    for name, reason in skipped.items():
        print(f"{name}: skipped ({reason})")
    return benchmarks, skipped


def print_sources(models: Mapping[str, str], unavailable: Mapping[str, str], external_reports: Mapping[str, dict]):
    """Our checkpoints under their table names, the ones not available and why, and each external file's use."""
    print("our models:", {automatic.source_label(s): m for s, m in models.items()})
    for source, reason in unavailable.items():
        print(f"unavailable {source}: {reason}")
    for source, report in external_reports.items():
        missing = {k: v["n"] for k, v in report["missing"].items()}
        print(f"{source}: {report['used']} used; problems {report['problems']}; missing {missing}")


def print_unscored(unscored: Mapping[str, str]) -> None:
    for name, reason in unscored.items():
        print(f"{name}: not scored ({reason})")


def score_overview(scores: pd.DataFrame) -> pd.DataFrame:
    """Mean composite S and the share of items the judge scored, with their counts, per benchmark, judge, source."""
    return scores.groupby(["benchmark", "judge", "source"], sort=False)[["composite", "ok"]].agg(["mean", "count"]).round(3)


def paired_tests(scores: pd.DataFrame, order3: Sequence[str], order4: Sequence[str], *, seed: int,
                 n_boot: int) -> list[dict]:
    """Paired tests of adjacent rows of table 3, then of table 4."""
    return (automatic.adjacent_paired_tests(scores, list(order3), table="table3", seed=seed, n_boot=n_boot)
            + automatic.adjacent_paired_tests(scores, list(order4), table="table4", seed=seed, n_boot=n_boot))


def targeted_metrics(targeted_test: Mapping[str, Any], models: Mapping[str, str], rates: pd.DataFrame,
                     tests: pd.DataFrame, seeded: pd.DataFrame, kinds: pd.DataFrame,
                     table2_frame: pd.DataFrame | None = None, table4_frame: pd.DataFrame | None = None,
                     measure_tests: pd.DataFrame | None = None) -> dict:
    """The targeted test subsets' part of metrics.json: sizes, models, P0 rates, paired tests, rates over seeds,
    which kind of P0 error moved, the comparisons in words, and table 2's measures (Correct, P0, P1, P2,
    multi-clause, unsupported, words) per model, over seeds (table 4) and compared pair by pair."""
    records = lambda frame: frame.to_dict(orient="records") if frame is not None else []  # noqa: E731
    return {"n": {mode: len(pairs) for mode, pairs in targeted_test.items()}, "models": models,
            "rates": rates.to_dict(orient="records"), "paired_tests": tests.to_dict(orient="records"),
            "seeded": seeded.to_dict(orient="records"), "error_kinds": kinds.to_dict(orient="records"),
            "summary": targeted.plain_words(tests), "table2": records(table2_frame), "table4": records(table4_frame),
            "measure_tests": records(measure_tests)}


def stage_metrics(*, stage_dir: str | Path, benchmarks: Mapping[str, automatic.Benchmark], skipped, unscored,
                  sources: Sequence[str], models, unavailable, external, generation, judges: list, judge_seconds,
                  summaries, paired, agreement, order3: Sequence[str], order4: Sequence[str],
                  written: Mapping[str, Mapping[str, Any]], instruction_files: Sequence[Path],
                  category_figures: Sequence[str], targeted: dict, started: float) -> dict:
    """What notebook 05 writes to metrics.json: the benchmarks and sources, the judges and their reports, every
    summary, paired test and agreement, the tables' files and row orders, the targeted part, the wall time."""
    stage_dir = Path(stage_dir)
    return {
        "benchmarks": {name: {"origin": b.origin, "n": len(b.pairs), "load_report": b.load_report}
                       for name, b in benchmarks.items()},
        "skipped_benchmarks": skipped, "unscored_benchmarks": unscored,
        "sources": list(sources), "models": models, "unavailable_sources": unavailable, "external": external,
        "generation": generation, "judges": [automatic.judge_name(j) for j in judges],
        "judge_reports": automatic.judge_reports(judges), "judge_seconds": judge_seconds,
        "results": summaries, "paired_tests": paired, "agreement": agreement,
        "table3_order": [automatic.source_label(s) for s in order3],
        "table4_order": [automatic.source_label(s) for s in order4],
        "tables": {stem: {kind: str(p.relative_to(stage_dir)) for kind, p in files.items() if kind != "rows"}
                   for stem, files in written.items()},
        "instruction_files": [str(p.relative_to(stage_dir)) for p in instruction_files],
        "figures": ["table3_scores.png", "table4_scores.png", "targeted_p0.png", *category_figures],
        "targeted": targeted,
        "wall_seconds": time.time() - started}
