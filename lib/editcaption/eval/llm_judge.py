"""LLM judges (paper §5.2, appendix B): a VLM scores each instruction in three separate calls.

For every item (id, source_image, target_image, gt, instruction) the judge sends, per dimension
(accuracy, completeness, clarity), the two images and the prompt of `eval.judge_prompts` (ground
truth + instruction), and reads the score from the one-line JSON the prompt asks for. A reply whose
JSON is missing, whose score is not a number, off the dimension's scale (`judge_prompts.SCORE_RANGE`,
an integer for accuracy, a lookup-table value for completeness) or for another dimension is a
failure: counted per model and dimension in `report()`, NaN in the results, never a made-up score.

Engines are the caption backends of `editcaption.generation`: `openai` (any OpenAI-compatible
endpoint, with its retries, backoff and Retry-After handling; the key comes from the environment
variable `api_key_env` only) and `transformers` (a local VLM folder).

With `cache_path`, every reply is appended to a JSONL file (one flushed line per reply) keyed by
(judge model, prompt version, dimension, pair id, sha256 of the instruction). A rerun reads it and
asks only for what is missing, so it pays nothing twice and a killed run loses nothing; replies
that did not parse are final too (the model answered), while requests that failed on 429/5xx/
timeouts after all retries are asked again. The API key is never written: replies and error texts
are scrubbed of it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, NamedTuple

import pandas as pd

from editcaption import generation, jsonl_cache, rubric
from editcaption.eval.judge_prompts import COMPLETENESS_VALUES, DIMENSIONS, INTEGER_SCORES, PROMPT_VERSION, SCORE_RANGE, build_prompt
from editcaption.records import RecordError
from editcaption.world.rule_judge import RuleJudge

log = logging.getLogger(__name__)

RESULT_COLUMNS = ("id", "instruction", "accuracy", "completeness", "clarity", "composite", "ok", "failure")
FAILURE_KINDS = ("request_failed", "no_json", "no_score", "invalid_score", "out_of_range", "wrong_dimension",
                 "empty_instruction", "no_changes")
CACHE_KEY = ("judge", "prompt_version", "dimension", "id", "instruction_sha256")
BACKEND_NAMES = ("openai", "transformers")
DEFAULT_MAX_NEW_TOKENS = 2048  # the judge writes its steps before the JSON line (thinking models need more)
REASON_CHARS = 200  # how much of a failure reason the results table quotes


class Verdict(NamedTuple):
    """One dimension's outcome: a score, or the failure kind and reason (score None)."""

    score: float | None
    reasoning: str = ""
    kind: str = ""
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.score is not None


def instruction_hash(instruction: str) -> str:
    return hashlib.sha256(instruction.encode("utf-8")).hexdigest()


# ----------------------------------------------------------------------------------------- the reply

def _json_objects(text: str) -> Iterator[dict]:
    """Every JSON object embedded in `text` (code fences and prose around it are skipped)."""
    decoder = json.JSONDecoder()
    start = text.find("{")
    while start != -1:
        try:
            value, end = decoder.raw_decode(text, start)
        except ValueError:
            start = text.find("{", start + 1)
            continue
        if isinstance(value, dict):
            yield value
        start = text.find("{", end)


def check_score(dimension: str, value: Any) -> Verdict:
    """`value` as a valid score of `dimension`, or the reason it is not one."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return Verdict(None, kind="invalid_score", reason=f"the score {value!r} is not a number")
    low, high = SCORE_RANGE[dimension]
    if not low <= value <= high:
        return Verdict(None, kind="out_of_range", reason=f"the score {value!r} is outside [{low:g}, {high:g}]")
    if dimension in INTEGER_SCORES and value != int(value):
        return Verdict(None, kind="invalid_score", reason=f"the {dimension} score {value!r} is not an integer")
    if dimension == "completeness" and not any(abs(value - v) < 1e-9 for v in COMPLETENESS_VALUES):
        return Verdict(None, kind="invalid_score", reason=f"the completeness score {value!r} is not in the lookup table")
    return Verdict(float(value))


def parse_reply(dimension: str, text: str) -> Verdict:
    """The score of a judge's reply: its last JSON object with a "score" (appendix B's one-line JSON)."""
    if dimension not in DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    objects = list(_json_objects(text or ""))
    scored = [o for o in objects if "score" in o]
    excerpt = " ".join((text or "").split())[:REASON_CHARS]
    if not scored:
        kind = "no_score" if objects else "no_json"
        what = "has no \"score\"" if objects else "has no JSON object"
        return Verdict(None, kind=kind, reason=f"the reply {what}: {excerpt!r}")
    reply = scored[-1]
    named = reply.get("dimension")
    if isinstance(named, str) and named.strip().lower() != dimension:
        return Verdict(None, kind="wrong_dimension", reason=f"the reply scores {named!r}, not {dimension!r}")
    verdict = check_score(dimension, reply["score"])
    reasoning = reply.get("reasoning")
    return verdict._replace(reasoning=reasoning if isinstance(reasoning, str) else json.dumps(reasoning))


# ------------------------------------------------------------------------------------------------ items

class _Item(NamedTuple):
    index: int
    id: str
    instruction: str
    gt: Mapping
    row: Mapping


def _undecoded(items):
    """A `datasets.Dataset`'s rows with the images left encoded (decoded one item at a time when sent)."""
    import datasets

    if not hasattr(items, "cast_column"):
        return items
    for column in ("source_image", "target_image"):
        if column in items.column_names:
            items = items.cast_column(column, datasets.Image(decode=False))
    return items


def _check_items(items: Iterable[Mapping], fields: tuple[str, ...]) -> list[_Item]:
    """The items with their fields checked (RecordError naming the row and field); ids must be unique."""
    checked, seen = [], set()
    items = _undecoded(items)
    for index, row in enumerate(items):
        if not isinstance(row, Mapping):
            raise RecordError(f"expected a dict, found {type(row).__name__}", row=index)
        pair_id = row.get("id")
        if not isinstance(pair_id, str) or not pair_id:
            raise RecordError(f"expected a non-empty string id, found {pair_id!r}", row=index, field="id")
        if pair_id in seen:
            raise RecordError("duplicate id (one row per pair and instruction)", row=pair_id, field="id")
        seen.add(pair_id)
        for field in fields:
            if field not in row:
                raise RecordError("missing field", row=pair_id, field=field)
        if not isinstance(row["instruction"], str):
            raise RecordError(f"expected a string, found {type(row['instruction']).__name__}", row=pair_id,
                              field="instruction")
        gt = row.get("gt")
        if "gt" in fields and (not isinstance(gt, Mapping)
                               or any(k not in gt for k in ("primary_changes", "secondary_changes", "overall"))):
            raise RecordError("gt must have primary_changes, secondary_changes and overall", row=pair_id, field="gt")
        checked.append(_Item(index, pair_id, row["instruction"], gt, row))
    return checked


def _decoded(value: Any, pair_id: str, field: str):
    """The image fully decoded now: the three calls of an item share it across threads (PIL loads lazily)."""
    image = generation.pil_image(value, pair_id, field)
    try:
        image.load()
    except OSError as err:
        raise RecordError(f"cannot decode the image: {err}", row=pair_id, field=field) from err
    return image


def _results(items: list[_Item], verdicts: list[dict[str, Verdict]]) -> pd.DataFrame:
    """The results table (RESULT_COLUMNS), one row per item in item order."""
    rows = []
    for item, by_dim in zip(items, verdicts):
        scores = {d: by_dim[d].score if by_dim[d].ok else math.nan for d in DIMENSIONS}
        ok = all(by_dim[d].ok for d in DIMENSIONS)
        failure = "; ".join(f"{d}: {by_dim[d].kind}: {by_dim[d].reason[:REASON_CHARS]}" for d in DIMENSIONS
                            if not by_dim[d].ok)
        rows.append({"id": item.id, "instruction": item.instruction, **scores,
                     "composite": rubric.composite(*(scores[d] for d in DIMENSIONS)) if ok else math.nan,
                     "ok": ok, "failure": failure})
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


class _Accounts:
    """Counts of one judge since it was made (every score() call adds to them)."""

    def __init__(self):
        self.items = self.items_ok = self.requests = self.attempts = self.cached = 0
        self.prompt_tokens = self.completion_tokens = 0
        self.seconds = 0.0
        self.failures: dict[str, Counter] = {d: Counter() for d in DIMENSIONS}

    def add_verdicts(self, verdicts: list[dict[str, Verdict]]) -> None:
        self.items += len(verdicts)
        self.items_ok += sum(all(v.ok for v in by_dim.values()) for by_dim in verdicts)
        for by_dim in verdicts:
            for dimension, verdict in by_dim.items():
                if not verdict.ok:
                    self.failures[dimension][verdict.kind] += 1

    def report(self, judge: str, price_per_million: tuple[float, float]) -> dict:
        price_in, price_out = price_per_million
        cost = (self.prompt_tokens * price_in + self.completion_tokens * price_out) / 1e6
        return {
            "judge": judge, "prompt_versions": dict(PROMPT_VERSION), "items": self.items, "items_ok": self.items_ok,
            "requests": self.requests, "attempts": self.attempts, "cached": self.cached,
            "failures": {d: sum(c.values()) for d, c in self.failures.items()},
            "failure_kinds": {d: dict(sorted(c.items())) for d, c in self.failures.items()},
            "prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
            "price_per_million": [price_in, price_out], "cost_usd": round(cost, 6), "seconds": round(self.seconds, 3),
        }


# ------------------------------------------------------------------------------------------------ cache

class _JudgeCache:
    """The judge's reply cache (`jsonl_cache`): reads the reusable replies, appends one flushed line per reply."""

    def __init__(self, path: Path, scrub):
        self.path, self.scrub = path, scrub
        records, torn = jsonl_cache.read_records(path, required=(*CACHE_KEY, "status", "retryable", "reply", "kind"),
                                                 what="LLM-judge cache")
        self.entries: dict[tuple, dict] = {tuple(entry[k] for k in CACHE_KEY): entry for entry in records}
        if torn:
            log.warning("%s: skipped %d unreadable line(s) (a run killed while writing)", self.path, len(torn))
        self.writer = jsonl_cache.AppendWriter(path)

    def reusable(self, key: tuple) -> dict | None:
        """The cached reply for `key` unless it was a request failure worth asking again."""
        entry = self.entries.get(key)
        if entry is None or (entry["kind"] == "request_failed" and entry["retryable"]):
            return None
        return entry

    def append(self, key: tuple, verdict: Verdict, caption: generation.Caption) -> None:
        entry = {**dict(zip(CACHE_KEY, key)), "status": "ok" if verdict.ok else "failed", "score": verdict.score,
                 "kind": verdict.kind, "reason": self.scrub(verdict.reason), "reasoning": self.scrub(verdict.reasoning),
                 "retryable": caption.retryable, "reply": self.scrub(caption.instruction) if caption.ok else None,
                 "usage": caption.usage, "finish_reason": caption.finish_reason, "attempts": caption.attempts}
        self.writer.append(entry)
        self.entries[key] = entry

    def close(self) -> None:
        self.writer.close()


def _cached_verdict(dimension: str, entry: dict) -> Verdict:
    """A cached reply read again with today's parser (a request failure keeps its recorded reason)."""
    if entry["reply"] is None:
        return Verdict(None, kind=entry["kind"], reason=entry["reason"])
    return parse_reply(dimension, entry["reply"])


# ------------------------------------------------------------------------------------------------ judge

class LLMJudge:
    """A VLM judge behind an OpenAI-compatible endpoint (`backend="openai"`) or a local folder ("transformers").

    `price_per_million` is (input, output) USD per million tokens for the cost estimate; other keywords
    go to the engine (generation.OpenAIBackend: max_workers, backoff_s, max_backoff_s, batch_size,
    extra_body, temperature, max_new_tokens; generation.TransformersBackend: device, dtype, max_new_tokens).
    """

    def __init__(self, model: str, *, backend: str = "openai", base_url: str = "", api_key_env: str = "OPENAI_API_KEY",
                 cache_path: str | Path | None = None, max_retries: int = 5, timeout: float = 120.0,
                 price_per_million: tuple[float, float] = (0.0, 0.0), **backend_kwargs):
        if backend not in BACKEND_NAMES:
            raise ValueError(f"unknown judge backend {backend!r}; expected one of {BACKEND_NAMES}")
        if len(price_per_million) != 2 or any(not isinstance(p, (int, float)) or p < 0 for p in price_per_million):
            raise ValueError(f"price_per_million must be two non-negative numbers, got {price_per_million!r}")
        backend_kwargs.setdefault("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
        if backend == "openai":
            if not base_url:
                raise ValueError("the openai judge needs base_url (e.g. https://api.openai.com/v1)")
            self.engine = generation.OpenAIBackend(model, base_url, api_key_env=api_key_env, timeout=timeout,
                                                   max_retries=max_retries, **backend_kwargs)
        else:
            self.engine = generation.TransformersBackend(model, batch_size=1, **backend_kwargs)
        self.backend, self.model = backend, str(model)
        self.name = f"{backend}:{self.model}"
        self.price_per_million = (float(price_per_million[0]), float(price_per_million[1]))
        self.cache_path = Path(cache_path) if cache_path is not None else None
        self.details: list[dict] = []  # per item of the last score(): dimension -> score, reasoning, failure
        self._accounts = _Accounts()

    def __repr__(self) -> str:
        return f"LLMJudge({self.name!r}, cache_path={str(self.cache_path) if self.cache_path else None!r})"

    @property
    def cache_identity(self) -> str:
        """The judge model as cache lines name it (a local folder adds its weights' fingerprint)."""
        return f"{self.backend}:{self.engine.cache_identity}"

    def _scrub(self, text: str) -> str:
        scrub = getattr(self.engine, "_scrub", None)
        return scrub(text) if scrub and text else text

    def score(self, items, *, progress: bool = True) -> pd.DataFrame:
        """One row per item (RESULT_COLUMNS): the three scores, the composite (NaN where a dimension failed), ok,
        failure ("" or "dimension: kind: reason; ..."). Items: dicts with id, source_image, target_image (PIL
        image, path or {"bytes", "path"}), gt {primary_changes, secondary_changes, overall} and instruction."""
        from tqdm.auto import tqdm

        start = time.perf_counter()
        checked = _check_items(items, ("instruction", "gt", "source_image", "target_image"))
        cache = _JudgeCache(self.cache_path, self._scrub) if self.cache_path is not None else None
        verdicts: list[dict[str, Verdict]] = [{} for _ in checked]
        todo: list[tuple[_Item, list[tuple[str, tuple]]]] = []
        for k, item in enumerate(checked):
            if not item.instruction.strip():
                verdicts[k] = {d: Verdict(None, kind="empty_instruction", reason="empty instruction") for d in DIMENSIONS}
                continue
            digest, pending = instruction_hash(item.instruction), []
            for dimension in DIMENSIONS:
                key = (self.cache_identity, PROMPT_VERSION[dimension], dimension, item.id, digest)
                entry = cache.reusable(key) if cache else None
                if entry is None:
                    pending.append((dimension, key))
                else:
                    verdicts[k][dimension] = _cached_verdict(dimension, entry)
                    self._accounts.cached += 1
            if pending:
                todo.append((item, pending))
        where = {}  # job id -> (item index, dimension, cache key)

        def jobs() -> Iterator[tuple[generation.Pair, str]]:
            for item, pending in todo:
                source, target = (_decoded(item.row[f], item.id, f) for f in ("source_image", "target_image"))
                for dimension, key in pending:
                    job = f"{item.index}/{dimension}"
                    where[job] = (item.index, dimension, key)
                    yield generation.Pair(job, source, target), build_prompt(dimension, item.gt, item.instruction)

        bar = tqdm(total=sum(len(p) for _, p in todo), desc=f"judge ({self.name})", unit="call", disable=not progress)
        run = self.engine.complete(jobs()) if todo else iter(())
        try:
            for caption in run:
                k, dimension, key = where.pop(caption.id)
                verdict = (parse_reply(dimension, self._scrub(caption.instruction)) if caption.ok else
                           Verdict(None, kind="request_failed", reason=self._scrub(caption.reason)))
                if cache is not None:
                    cache.append(key, verdict, caption)
                verdicts[k][dimension] = verdict
                self._count(caption)
                bar.update()
        finally:
            if hasattr(run, "close"):
                run.close()
            bar.close()
            if cache is not None:
                cache.close()
        self._accounts.add_verdicts(verdicts)
        self._accounts.seconds += time.perf_counter() - start
        self.details = [{"id": item.id, **{d: by_dim[d]._asdict() for d in DIMENSIONS}}
                        for item, by_dim in zip(checked, verdicts)]
        failed = sum(not all(v.ok for v in by_dim.values()) for by_dim in verdicts)
        if failed:
            log.warning("%s: %d of %d items have a failed dimension (see report())", self.name, failed, len(checked))
        return _results(checked, verdicts)

    def _count(self, caption: generation.Caption) -> None:
        self._accounts.requests += 1
        self._accounts.attempts += caption.attempts
        usage = caption.usage or {}
        for field in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(field), int):
                setattr(self._accounts, field, getattr(self._accounts, field) + usage[field])

    def report(self) -> dict:
        """Since the judge was made: items, requests sent (attempts with retries), replies reused from the cache,
        failures per dimension (and per kind), prompt/completion tokens and their cost in USD."""
        return self._accounts.report(self.name, self.price_per_million)


class RuleJudgeAdapter:
    """The rule judge (`eval.judges.RuleJudge`) behind LLMJudge's interface: needs each item's `changes`."""

    name = "rule"

    def __init__(self):
        self.judge = RuleJudge()
        self.details: list[dict] = []
        self._accounts = _Accounts()

    def score(self, items, *, progress: bool = True) -> pd.DataFrame:
        """Same table as LLMJudge.score; an item without structured changes is a failure ("no_changes")."""
        start = time.perf_counter()
        checked = _check_items(items, ("instruction",))
        verdicts, self.details = [], []
        for item in checked:
            changes = item.row.get("changes")
            if not item.instruction.strip():
                failure = ("empty_instruction", "empty instruction")
            elif not changes:
                failure = ("no_changes", "the rule judge needs the pair's structured changes")
            else:
                failure = None
            if failure:
                verdicts.append({d: Verdict(None, kind=failure[0], reason=failure[1]) for d in DIMENSIONS})
                self.details.append({"id": item.id})
                continue
            result = self.judge.score(changes, item.instruction)
            verdicts.append({d: Verdict(float(result[d])) for d in DIMENSIONS})
            self.details.append({"id": item.id, **result})
        self._accounts.add_verdicts(verdicts)
        self._accounts.seconds += time.perf_counter() - start
        return _results(checked, verdicts)

    def report(self) -> dict:
        return self._accounts.report(self.name, (0.0, 0.0))


def make_judge(spec: str, **kwargs):
    """A judge from its spec: "rule" (keywords are ignored), "openai:<model>" or "transformers:<path>"
    (keywords go to LLMJudge)."""
    if spec == "rule":
        return RuleJudgeAdapter()
    backend, _, model = spec.partition(":")
    if backend not in BACKEND_NAMES or not model:
        raise ValueError(f"unknown judge {spec!r}; expected 'rule', 'openai:<model>' or 'transformers:<path>'")
    return LLMJudge(model, backend=backend, **kwargs)


# ------------------------------------------------------------------------------------------ instruction files

INSTRUCTION_PROBLEMS = ("bad_json", "missing_field", "empty_instruction", "unknown_id", "duplicate_id")


def read_instructions(path: str | Path, known_ids: Iterable[str] | None = None, *, on_error: str = "raise",
                      allow_empty: bool = False) -> tuple[dict[str, str], dict[str, list[int]]]:
    """id -> instruction from a JSONL file of {"id", "instruction"} lines, and the problem lines by kind.

    A line that is not a JSON object, lacks a string id/instruction, has an empty instruction (unless
    `allow_empty`: a model that wrote nothing), an id not in `known_ids` or an id seen before raises
    RecordError naming the file, line and field (on_error="raise") or is skipped and listed (on_error="count")."""
    if on_error not in ("raise", "count"):
        raise ValueError(f"on_error must be 'raise' or 'count', got {on_error!r}")
    path = Path(path)
    if not path.is_file():
        raise RecordError("no such file", file=path)
    known = set(known_ids) if known_ids is not None else None
    found: dict[str, str] = {}
    problems: dict[str, list[int]] = {kind: [] for kind in INSTRUCTION_PROBLEMS}
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                problem = None if isinstance(item, dict) else ("bad_json", None, "expected a JSON object")
            except json.JSONDecodeError as err:
                item, problem = None, ("bad_json", None, f"not JSON ({err.msg})")
            if problem is None:
                missing = next((f for f in ("id", "instruction") if not isinstance(item.get(f), str)), None)
                if missing:
                    problem = ("missing_field", missing, "missing field or not a string")
                elif not allow_empty and not item["instruction"].strip():
                    problem = ("empty_instruction", "instruction", "empty instruction")
                elif known is not None and item["id"] not in known:
                    problem = ("unknown_id", "id", f"no pair with id {item['id']!r}")
                elif item["id"] in found:
                    problem = ("duplicate_id", "id", f"id {item['id']!r} given twice")
            if problem:
                kind, field, message = problem
                if on_error == "raise":
                    raise RecordError(message, file=path, row=number, field=field)
                problems[kind].append(number)
                continue
            found[item["id"]] = item["instruction"]
    return found, {kind: lines for kind, lines in problems.items() if lines}


def _judge_items(pairs, instructions: Mapping[str, str]) -> list[dict]:
    """Items for the judge: the pairs that have an instruction, in pair order, images left undecoded."""
    if hasattr(pairs, "select_columns"):
        pairs = _undecoded(pairs.select_columns(["id", "source_image", "target_image", "gt", "changes"]))
    return [{**row, "instruction": instructions[row["id"]]} for row in pairs if row["id"] in instructions]


def score_file(judge, pairs, instructions_path: str | Path, out_path: str | Path, *, on_error: str = "raise",
               progress: bool = True) -> dict:
    """Score a JSONL file of {"id", "instruction"} lines against `pairs` with `judge` (`make_judge`).

    Writes `out_path` (JSONL: the results row plus each dimension's reasoning and failure), the same rows as
    CSV beside it (`.csv`) and `<stem>.summary.json`; returns the summary: n, n_ok, the means over items
    judged on every dimension (NaN when none), the judge's report (failures, tokens, cost), and the
    instruction file's problem lines (see read_instructions)."""
    out_path = Path(out_path)
    ids = pairs["id"] if hasattr(pairs, "column_names") else [row["id"] for row in pairs]
    instructions, problems = read_instructions(instructions_path, ids, on_error=on_error)
    table = judge.score(_judge_items(pairs, instructions), progress=progress)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with out_path.open("w", encoding="utf-8") as out:
        for row, detail in zip(table.to_dict("records"), judge.details):
            extra = {f"{d}_{field}": detail[d][field] for d in DIMENSIONS if d in detail
                     for field in ("reasoning", "kind", "reason")}
            row = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}
            out.write(json.dumps({**row, **extra}, ensure_ascii=False) + "\n")
    table.to_csv(out_path.with_suffix(".csv"), index=False)
    ok = table[table["ok"]]
    summary = {
        "n": len(table), "n_ok": len(ok),
        **{m: (round(float(ok[m].mean()), 6) if len(ok) else None) for m in (*DIMENSIONS, "composite")},
        "judge": judge.report(), "problems": problems, "out": str(out_path),
        "csv": str(out_path.with_suffix(".csv")), "summary": str(out_path.with_name(out_path.stem + ".summary.json")),
    }
    Path(summary["summary"]).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary
