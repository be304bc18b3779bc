"""Automatic evaluation (paper §5.2, tables 3 and 4): every instruction source on every benchmark, every judge.

Sources are our checkpoints of a run (base, SFT and the DPO variants notebook 04 trained), which write an
instruction per pair here, and external instruction files (JSONL lines {"id", "instruction"}, e.g. collected
from a closed model elsewhere). Benchmarks are the synthetic held-out test split, HQ-Edit, ByteMorph-Bench and
one's own Eval-400-style set. The rule judge needs structured `changes`, so it scores the synthetic split only;
the real benchmarks have text ground truth and are scored by LLM judges (`eval.llm_judge`).

The central table is the per-item score frame (SCORE_COLUMNS plus benchmark, source, judge); summaries,
tables 3-4, paired bootstrap tests between adjacent table rows and judge agreement all come from it.
"""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path

import pandas as pd

from editcaption import paths, records
from editcaption.data import loaders
from editcaption.eval import llm_judge, stats, summary
from editcaption.generation import TransformersBackend
from editcaption.records import RecordError

BENCHMARKS = ("synthetic", "hq-edit", "bm-bench", "own")
BENCHMARK_LABELS = {"synthetic": "synthetic-test", "hq-edit": "hq-edit", "bm-bench": "bm-bench", "own": "own"}
GROUP_COLUMN = {"synthetic": "category", "bm-bench": "edit_type", "own": "category"}  # per-category breakdown
OUR_SOURCES = ("base", "sft", "nll_only", "dpo", "const", "st_only", "h_only", "hae")
DPO_VARIANTS = ("nll_only", "dpo", "const", "st_only", "h_only", "hae")  # notebook 04's runs: table 4 and the controls
SOURCE_LABELS = {"base": "base", "sft": "SFT", "nll_only": "NLL only (control)", "dpo": "DPO",
                 "const": "DPO, constant margin (control)", "st_only": "+s·c only", "h_only": "+h only",
                 "hae": "HAE-DPO"}
TABLE3_OURS = ("base", "sft", "dpo", "hae")  # the ablation-only variants go to table 4
TABLE4_ROWS = ("sft", "nll_only", "dpo", "st_only", "h_only", "hae", "const")  # adjacent rows are tested
METRICS = {"S": "composite", "Acc": "accuracy", "Comp": "completeness", "Clar": "clarity"}
SCORE_COLUMNS = ("id", "category", "edit_type", "accuracy", "completeness", "clarity", "composite", "ok", "failure")
RULE = "rule"
JUDGE_CHUNK = 64  # items an LLM judge gets per call: bounds the decoded images held in memory


@dataclass
class Benchmark:
    """One loaded benchmark: its pairs (records.EDIT_PAIR_FEATURES) and what the loader reported."""

    name: str
    pairs: object  # datasets.Dataset
    origin: str
    load_report: dict = field(default_factory=dict)

    @property
    def ids(self) -> list[str]:
        return list(self.pairs["id"])

    @property
    def has_changes(self) -> bool:
        """True when every pair has structured changes (what the rule judge needs)."""
        return len(self.pairs) > 0 and all(len(c) > 0 for c in self.pairs["changes"])


def parse_list(text: str) -> list[str]:
    """"a, b,,c" -> ["a", "b", "c"]."""
    return [part.strip() for part in str(text).split(",") if part.strip()]


def source_label(source: str) -> str:
    """The table row name of a source (our checkpoints get the paper's names, external files keep theirs)."""
    return SOURCE_LABELS.get(source, source)


# --------------------------------------------------------------------------------------------- benchmarks

def load_benchmarks(locations: dict[str, str], sizes: dict[str, int], *, seed: int = 0,
                    on_error: str = "raise") -> tuple[dict[str, Benchmark], dict[str, str]]:
    """Load each benchmark whose location is set (n = sizes[name], 0 = all, seeded); the others are
    returned as skipped with the reason."""
    loaded, skipped = {}, {}
    for name, location in locations.items():
        if name not in BENCHMARKS:
            raise ValueError(f"unknown benchmark {name!r}; expected one of {BENCHMARKS}")
        if not location:
            skipped[name] = "no path given"
            continue
        n = sizes.get(name) or None
        ds = loaders.load_benchmark(name, location, n=n, seed=seed, on_error=on_error)
        report = loaders.load_report(ds)
        loaded[name] = Benchmark(name, ds, str(location), report.__dict__ if report else {"rows_kept": len(ds)})
    return loaded, skipped


# --------------------------------------------------------------------------------------------- sources

def our_models(sources: list[str], run_name: str, output_root: str = "outputs", *, base_model_path: str = "",
               model_name_or_path: str = "", sft_model_path: str = "") -> tuple[dict[str, str], dict[str, str]]:
    """The checkpoints of this run for `sources` (of OUR_SOURCES): base (base_model_path, else the profile's
    model_name_or_path, else notebook 02's base_model/), SFT (notebook 02's sft_model) and each DPO variant
    notebook 04 trained. Returns (source -> path, source -> why it is unavailable); a variant 04 did not
    train is unavailable, a missing base or SFT model is an error."""

    unknown = [s for s in sources if s not in OUR_SOURCES]
    if unknown:
        raise ValueError(f"unknown source {unknown[0]!r} in eval_sources; expected some of {OUR_SOURCES}")
    models, unavailable = {}, {}
    if "base" in sources:
        override = base_model_path or model_name_or_path
        models["base"] = (paths.model_source(override) if override
                          else str(paths.upstream("", run_name, "02_sft", "base_model", output_root)))
    if "sft" in sources:
        models["sft"] = paths.sft_model(sft_model_path, run_name, output_root)
    variants = [s for s in sources if s in DPO_VARIANTS]
    if variants:
        dpo_stage = paths.stage_dir(run_name, "04_hae_dpo", output_root)
        metrics_file = dpo_stage / "metrics.json"
        trained = json.loads(metrics_file.read_text())["variants"] if metrics_file.exists() else []
        for variant in variants:
            if variant not in trained:
                unavailable[variant] = (f"notebook 04 did not train it (trained: {trained})" if metrics_file.exists()
                                        else f"{metrics_file} not found: notebook 04 has not run for run '{run_name}'")
                continue
            models[variant] = paths.dpo_model(variant, run_name, output_root)
    return {s: models[s] for s in OUR_SOURCES if s in models}, unavailable


def generate_all(models: dict[str, str], benchmarks: dict[str, Benchmark], cache_dir: str | Path, *,
                 batch_size: int = 16, max_new_tokens: int = 48,
                 progress: bool = True) -> tuple[dict[str, dict[str, dict[str, str]]], dict]:
    """Each checkpoint writes an instruction per pair of each benchmark (greedy, batched; resumable through
    <cache_dir>/<benchmark>/<source>.jsonl). Returns ({benchmark: {source: {id: text}}}, generation stats);
    a failed generation is "" (scored as written) and counted in the stats."""

    texts: dict[str, dict[str, dict[str, str]]] = {name: {} for name in benchmarks}
    report: dict[str, dict] = {}
    for source, model in models.items():
        backend = TransformersBackend(model, batch_size=batch_size, max_new_tokens=max_new_tokens)
        for name, bench in benchmarks.items():
            cache = Path(cache_dir) / name / f"{source}.jsonl"
            cache.parent.mkdir(parents=True, exist_ok=True)
            captions = backend.caption(bench.pairs, cache_path=cache, progress=progress)
            texts[name][source] = {c.id: c.instruction for c in captions}
            report.setdefault(name, {})[source] = {"model": model, **backend.stats}
    return texts, report


def parse_external(text: str) -> dict[str, Path]:
    """"gemini=a.jsonl, gpt41=b.jsonl" -> {name: path}; a malformed entry, a duplicate or clashing name or a
    missing file is an error naming it."""
    files: dict[str, Path] = {}
    for entry in parse_list(text):
        name, sep, location = (part.strip() for part in entry.partition("="))
        if not sep or not name or not location:
            raise ValueError(f"external_instructions entry {entry!r} is not name=path.jsonl")
        if name in files or name in OUR_SOURCES or name in SOURCE_LABELS.values():
            raise ValueError(f"external_instructions: source name {name!r} is used twice or names one of our models")
        path = Path(location)
        if not path.is_absolute():
            path = paths.repo_root() / path
        if not path.is_file():
            raise RecordError("external instruction file not found", file=path)
        files[name] = path
    return files


def read_instruction_file(path: str | Path, benchmark_ids: dict[str, list[str]], *,
                          max_listed: int = 20) -> tuple[dict[str, dict[str, str]], dict]:
    """Read one JSONL instruction file against the benchmarks' ids. Returns ({benchmark: {id: text}}, report).

    Nothing is dropped silently: lines that are not JSON objects, lack a string "id" or "instruction",
    repeat an id (the first line is kept) or name an id in no benchmark are counted and listed (file, line);
    per benchmark the file covers, the ids it lacks are counted and listed; benchmarks it does not touch at
    all are listed as not covered. A file with no usable line is an error."""
    path = Path(path)
    owner = {pid: name for name, ids in benchmark_ids.items() for pid in ids}
    found: dict[str, dict[str, str]] = {name: {} for name in benchmark_ids}
    problems: Counter = Counter()
    listed: list[dict] = []
    n_lines = 0
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            n_lines += 1
            problem, pair_id = _instruction_line_problem(line, owner, found)
            if problem:
                problems[problem] += 1
                if len(listed) < max_listed:
                    listed.append({"file": str(path), "line": number, "id": pair_id, "problem": problem})
                continue
            item = json.loads(line)
            found[owner[pair_id]][pair_id] = item["instruction"].strip()
    used = {name: texts for name, texts in found.items() if texts}
    if not used:
        raise RecordError(f"no line names a pair of the benchmarks evaluated ({sorted(benchmark_ids)}); "
                          f"problems: {dict(problems) or 'empty file'}", file=path)
    missing = {}
    for name, texts in used.items():
        lacking = [pid for pid in benchmark_ids[name] if pid not in texts]
        if lacking:
            missing[name] = {"n": len(lacking), "first": lacking[:max_listed]}
    report = {"file": str(path), "lines": n_lines, "used": {name: len(texts) for name, texts in used.items()},
              "problems": dict(problems), "problem_lines": listed, "missing": missing,
              "empty_instructions": sum(not t for texts in used.values() for t in texts.values()),
              "not_covered": [name for name in benchmark_ids if name not in used]}
    return used, report


def _instruction_line_problem(line: str, owner: dict[str, str], found: dict) -> tuple[str, object]:
    """("", id) for a usable line, else (what is wrong, the id when there is one)."""
    try:
        item = json.loads(line)
    except json.JSONDecodeError:
        return "not a JSON line", None
    if not isinstance(item, dict):
        return "not a JSON object", None
    pair_id = item.get("id")
    if not isinstance(pair_id, str) or not pair_id:
        return "no string 'id'", pair_id
    if not isinstance(item.get("instruction"), str):
        return "no string 'instruction'", pair_id
    if pair_id not in owner:
        return "id not in any evaluated benchmark", pair_id
    if pair_id in found[owner[pair_id]]:
        return "duplicate id (first line kept)", pair_id
    return "", pair_id


def read_external(files: dict[str, Path], benchmarks: dict[str, Benchmark]) -> tuple[dict, dict[str, dict]]:
    """Every external file against the loaded benchmarks: ({benchmark: {source: {id: text}}}, source -> report)."""
    ids = {name: bench.ids for name, bench in benchmarks.items()}
    texts: dict[str, dict[str, dict[str, str]]] = {name: {} for name in benchmarks}
    reports = {}
    for source, path in files.items():
        used, reports[source] = read_instruction_file(path, ids)
        for name, found in used.items():
            texts[name][source] = found
    return texts, reports


def merge_sources(*parts: dict) -> dict[str, dict[str, dict[str, str]]]:
    """Join {benchmark: {source: {id: text}}} mappings (earlier parts first in each benchmark's source order)."""
    merged: dict[str, dict[str, dict[str, str]]] = {}
    for part in parts:
        for name, sources in part.items():
            merged.setdefault(name, {}).update(sources)
    return merged


def write_instruction_files(texts: dict[str, dict[str, dict[str, str]]], out_dir: str | Path) -> list[Path]:
    """instructions/<benchmark>/<source>.jsonl, one {"id", "instruction"} per line in benchmark order."""
    written = []
    for name, sources in texts.items():
        for source, by_id in sources.items():
            path = Path(out_dir) / name / f"{source}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps({"id": pid, "instruction": text}, ensure_ascii=False) + "\n"
                                    for pid, text in by_id.items()), encoding="utf-8")
            written.append(path)
    return written


# --------------------------------------------------------------------------------------------- judging

def make_judges(specs: list[str], *, cache_dir: str | Path, base_url: str = "", api_key_env: str = "OPENAI_API_KEY",
                max_retries: int = 5, timeout: float = 120.0,
                price_per_million: tuple[float, float] = (0.0, 0.0)) -> list:
    """RULE for "rule" (scored here with the rule judge's failure tags), else an `llm_judge.make_judge` judge
    caching its replies under cache_dir. The API key is read by the judge from the variable named api_key_env."""
    judges: list = []
    for spec in specs:
        if spec == RULE:
            judges.append(RULE)
            continue

        judges.append(llm_judge.make_judge(spec, base_url=base_url, api_key_env=api_key_env,
                                           cache_path=Path(cache_dir) / f"{file_stem(spec)}.jsonl", max_retries=max_retries,
                                           timeout=timeout, price_per_million=price_per_million))
    if len({judge_name(j) for j in judges}) != len(judges):
        raise ValueError(f"judges {specs} name one judge twice")
    return judges


def judge_name(judge) -> str:
    return RULE if judge == RULE else judge.name


def file_stem(text: str) -> str:
    """A judge or source name as a file-name part ("openai:gpt-4.1" -> "openai_gpt-4.1")."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in text)


def score_source(bench: Benchmark, texts: dict[str, str], judge, *, progress: bool = True) -> pd.DataFrame:
    """One row per pair of `bench` that has an instruction in `texts` (SCORE_COLUMNS); an LLM judge's failed
    items keep their row with ok False and NaN scores."""
    index = [i for i, pid in enumerate(bench.ids) if pid in texts]
    if not index:
        return pd.DataFrame(columns=list(SCORE_COLUMNS))
    pairs = bench.pairs.select(index)
    if judge == RULE:
        scored = summary.score_instructions(pairs, [texts[pid] for pid in pairs["id"]])
        scored["ok"], scored["failure"] = True, ""
        return scored[list(SCORE_COLUMNS)]
    rows = pairs.select_columns(["id", "source_image", "target_image", "gt"])
    parts = []
    for start in range(0, len(rows), JUDGE_CHUNK):  # decoded (fully loaded) images of one chunk at a time
        chunk = rows.select(range(start, min(start + JUDGE_CHUNK, len(rows))))
        parts.append(judge.score([{**row, "instruction": texts[row["id"]]} for row in chunk], progress=progress))
    scored = pd.concat(parts, ignore_index=True)
    meta = pd.DataFrame({"id": pairs["id"], "category": pairs["category"], "edit_type": pairs["edit_type"]})
    scored = meta.merge(scored.drop(columns=[c for c in ("category", "edit_type") if c in scored]), on="id", how="left")
    lost = scored["ok"].isna()
    scored.loc[lost, "failure"] = "the judge returned no row for this item"
    scored["ok"] = scored["ok"].eq(True)
    scored["failure"] = scored["failure"].fillna("").astype(str)
    return scored[list(SCORE_COLUMNS)]


def score_all(benchmarks: dict[str, Benchmark], texts: dict[str, dict[str, dict[str, str]]], judges: list, *,
              progress: bool = True) -> tuple[pd.DataFrame, dict[str, str], dict[str, float]]:
    """Every (benchmark, source) with every judge that applies: the rule judge where pairs have structured
    changes, LLM judges everywhere. Returns the per-item frame (benchmark, source, judge + SCORE_COLUMNS),
    benchmark -> why it has no judge, and seconds spent per judge."""
    frames, unscored, seconds = [], {}, Counter()
    for name, bench in benchmarks.items():
        applicable = [j for j in judges if j != RULE or bench.has_changes]
        if not applicable:
            unscored[name] = ("only text ground truth: it needs an LLM judge and none is configured"
                              if RULE in judges else "no judge configured")
            continue
        for judge in applicable:
            for source, by_id in texts.get(name, {}).items():
                start = time.perf_counter()
                scored = score_source(bench, by_id, judge, progress=progress)
                seconds[judge_name(judge)] += time.perf_counter() - start
                frames.append(scored.assign(benchmark=name, source=source, judge=judge_name(judge)))
    columns = ["benchmark", "source", "judge", *SCORE_COLUMNS]
    scores = pd.concat(frames, ignore_index=True)[columns] if frames else pd.DataFrame(columns=columns)
    return scores, unscored, dict(seconds)


def judge_reports(judges: list) -> dict[str, dict]:
    """Requests, cache hits, failures, tokens and cost per LLM judge (the rule judge costs nothing)."""
    return {judge_name(j): ({"requests": 0, "cost_usd": 0.0} if j == RULE else j.report()) for j in judges}


# --------------------------------------------------------------------------------------------- statistics

def summarize_scores(scores: pd.DataFrame, *, group: str | None = None, seed: int = 0, n_boot: int = 2000) -> dict:
    """n, the items scored and failed (with the commonest reasons), and S/Acc/Comp/Clar each with a 95 %
    bootstrap CI over the scored items; per group (category, edit type) n and S with its CI."""
    ok = scores[scores["ok"].astype(bool) & scores["composite"].notna()]
    out: dict = {"n": int(len(scores)), "n_scored": int(len(ok)), "failures": int(len(scores) - len(ok)),
                 "failure_reasons": dict(Counter(scores.loc[~scores.index.isin(ok.index), "failure"]).most_common(5))}
    for metric, column in METRICS.items():
        if len(ok):
            value, low, high = stats.bootstrap_ci(ok[column], n_boot=n_boot, seed=seed)
            out[metric], out[f"{metric}_ci"] = value, [low, high]
        else:
            out[metric], out[f"{metric}_ci"] = None, [None, None]
    if group and len(ok):
        out["by_" + group] = {}
        for key, part in ok.groupby(group, sort=True):
            value, low, high = stats.bootstrap_ci(part["composite"], n_boot=n_boot, seed=seed)
            out["by_" + group][str(key) or "(none)"] = {"n": int(len(part)), "S": value, "S_ci": [low, high]}
    return out


def summarize_all(scores: pd.DataFrame, *, seed: int = 0, n_boot: int = 2000) -> dict:
    """{benchmark: {source: {judge: summary}}}."""
    out: dict = {}
    for (name, source, judge), part in scores.groupby(["benchmark", "source", "judge"], sort=False):
        out.setdefault(name, {}).setdefault(source, {})[judge] = summarize_scores(
            part, group=GROUP_COLUMN.get(name), seed=seed, n_boot=n_boot)
    return out


def adjacent_paired_tests(scores: pd.DataFrame, order: list[str], *, table: str = "", seed: int = 0,
                          n_boot: int = 2000) -> list[dict]:
    """Per benchmark and judge, `stats.paired_test` of S between each two adjacent rows of `order` that were
    scored (diff = lower row - upper row, on the items both have scored): BCa interval, permutation p-value;
    each row names its test."""
    tests = []
    for (name, judge), part in scores.groupby(["benchmark", "judge"], sort=False):
        present = [s for s in order if s in set(part["source"])]
        for upper, lower in zip(present, present[1:]):
            both = (part[part["source"] == upper].merge(part[part["source"] == lower], on="id", suffixes=("_a", "_b")))
            both = both[both["ok_a"].astype(bool) & both["ok_b"].astype(bool)
                        & both["composite_a"].notna() & both["composite_b"].notna()]
            test = {"table": table, "benchmark": name, "judge": judge, "a": source_label(upper),
                    "b": source_label(lower), "n": int(len(both))}
            if len(both):
                test.update(stats.paired_test(both["composite_a"], both["composite_b"], n_boot=n_boot, seed=seed))
            tests.append(test)
    return tests


def judge_agreement(scores: pd.DataFrame) -> list[dict]:
    """Per benchmark and pair of judges, over the (source, item) both scored: Spearman of S and of each
    dimension, and the mean absolute difference of S."""
    out = []
    for name, part in scores.groupby("benchmark", sort=False):
        judges = list(dict.fromkeys(part["judge"]))
        for first, second in combinations(judges, 2):
            a = part[(part["judge"] == first) & part["ok"].astype(bool)]
            b = part[(part["judge"] == second) & part["ok"].astype(bool)]
            both = a.merge(b, on=["source", "id"], suffixes=("_a", "_b"))
            row = {"benchmark": name, "judge_a": first, "judge_b": second, "n": int(len(both)),
                   "kind": "rule vs LLM" if RULE in (first, second) else "LLM vs LLM"}
            for metric, column in METRICS.items():
                row[f"spearman_{metric}"] = stats.spearman(both[f"{column}_a"], both[f"{column}_b"])
            row["mean_abs_diff_S"] = float((both["composite_a"] - both["composite_b"]).abs().mean()) if len(both) else None
            out.append(row)
    return out


# --------------------------------------------------------------------------------------------- tables

def table_long(summaries: dict, order: list[str], table: str) -> pd.DataFrame:
    """Long rows (records.LONG_COLUMNS) of the sources in `order` that were scored: S, Acc, Comp, Clar with CIs,
    per benchmark and judge; `data` is "<benchmark label> n=<items scored>"."""
    rows = []
    for name, by_source in summaries.items():
        for source in order:
            for judge, s in by_source.get(source, {}).items():
                for metric in METRICS:
                    low, high = s[f"{metric}_ci"]
                    rows.append({"table": table, "model": source_label(source), "benchmark": name, "metric": metric,
                                 "value": s[metric], "low": low, "high": high, "judge": judge,
                                 "data": f"{BENCHMARK_LABELS.get(name, name)} n={s['n_scored']}"})
    return pd.DataFrame(rows, columns=list(records.LONG_COLUMNS))


def table_orders(sources: list[str]) -> tuple[list[str], list[str]]:
    """(table 3 rows, table 4 rows) among `sources`: external files first then base, SFT, DPO, HAE-DPO; the
    ablation SFT, DPO, +s·c only, +h only, HAE-DPO."""
    external = [s for s in sources if s not in OUR_SOURCES]
    return (external + [s for s in TABLE3_OURS if s in sources], [s for s in TABLE4_ROWS if s in sources])
