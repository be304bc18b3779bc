"""Quality scorers for the SFT filter (paper §4.1): how well an instruction matches a pair's edit.

Every scorer returns EditScore's four fields on 0–10: `prompt_following`, `consistency`,
`perceptual_quality`, `overall`. Backends:

- `editscore`: the EditScore reward model (`pip install -e .[cluster]`, GPU). It is built as
  `editscore.EditScore(backbone=..., model_name_or_path=..., enable_lora=..., lora_path=...,
  score_range=..., num_pass=...)` and called as `.evaluate([source, target], instruction)`, which
  returns the four fields already divided down to 0–10 (`overall` = sqrt(min(SC) × PQ)).
  When its model's reply does not parse twice, EditScore itself falls back to a *random* score and
  says so in the reasoning ("guess_if_cannot_parse"); we count such a reply as a failure.
  With a vLLM backbone (one whose model has `batch_inference`, e.g. `qwen25vl_vllm`) and one pass,
  `score_pairs` sends `batch_size` pairs at a time through `EditScore.batch_evaluate`. That API returns
  only min(SC), PQ and O and puts the middle of the range in place of a reply it cannot parse, so the
  four fields are read from its raw replies with EditScore's own parser
  (`editscore.json_parser.parse_vlm_output_to_dict`), and a reply without its scores is a failure.
- `rule-standin`: a CPU STAND-IN, no reward model. It scores the instruction against the pair's
  structured `changes` with the rule judge and maps the rubric (1–5) onto EditScore's fields:
      prompt_following   = 2.5 × (accuracy − 1)      is what the instruction says true of the pair?
      consistency        = 2.5 × (completeness − 1)  changes left out of the instruction read as
                                                     over-editing by the target image
      perceptual_quality = 10                        synthetic renders are exact (no image signal)
      overall            = sqrt(min(prompt_following, consistency) × perceptual_quality)
  (`overall` follows EditScore's own combination). Pairs without `changes` fail.

A scorer that raises, or returns something that is not four finite numbers in [0, 10], is a
failure for that pair: `score_pairs` records the reason and never invents a score; failed pairs
leave the SFT set and are counted. Scores are cached as JSONL (one line per pair), so an
interrupted run resumes where it stopped.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

from editcaption import jsonl_cache
from editcaption.world.rule_judge import RuleJudge

log = logging.getLogger(__name__)

SCORE_FIELDS = ("prompt_following", "consistency", "perceptual_quality", "overall")
SCALE = (0.0, 10.0)
EDITSCORE_GUESS_MARK = "guess_if_cannot_parse"  # EditScore's reasoning when it guessed a random score
EDITSCORE_DEFAULTS = {"backbone": "qwen25vl", "model_name_or_path": "Qwen/Qwen2.5-VL-7B-Instruct",
                      "lora_path": "EditScore/EditScore-7B", "score_range": 25, "num_pass": 1}


class ScoreFailure(ValueError):
    """A scorer reply that cannot be used as a score."""


@dataclass(frozen=True)
class Scored:
    """One pair's scores, or why it has none (`error` is "" when scored)."""

    id: str
    instruction: str
    scores: dict | None
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.scores is not None


def check_scores(values: Any, *, who: str = "scorer") -> dict[str, float]:
    """The four EditScore fields as floats, or ScoreFailure naming what is missing or out of range."""
    if not isinstance(values, Mapping):
        raise ScoreFailure(f"{who} returned {type(values).__name__}, expected a mapping with {list(SCORE_FIELDS)}")
    scores = {}
    for name in SCORE_FIELDS:
        if name not in values:
            raise ScoreFailure(f"{who} reply lacks '{name}'")
        value = values[name]
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ScoreFailure(f"{who} reply '{name}' = {value!r} is not a number") from None
        if isinstance(value, (bool, str)) or not math.isfinite(number) or not SCALE[0] <= number <= SCALE[1]:
            raise ScoreFailure(f"{who} reply '{name}' = {value!r} is not a finite number in {list(SCALE)}")
        scores[name] = number
    return scores


def parse_editscore_result(result: Any) -> dict[str, float]:
    """The four fields of an `EditScore.evaluate` result; its random fallback is a failure."""
    if isinstance(result, Mapping):
        for key in ("SC_reasoning", "PQ_reasoning"):
            if EDITSCORE_GUESS_MARK in str(result.get(key, "")):
                raise ScoreFailure(f"EditScore could not parse its model's reply and guessed a random score "
                                   f"({key}: {str(result[key])[:120]!r})")
    return check_scores(result, who="EditScore")


class EditScoreScorer:
    """The EditScore reward model (GPU; `pip install -e .[cluster]`)."""

    name = "editscore"
    needs_images = True

    def __init__(self, backbone: str = EDITSCORE_DEFAULTS["backbone"],
                 model_name_or_path: str = EDITSCORE_DEFAULTS["model_name_or_path"],
                 lora_path: str = EDITSCORE_DEFAULTS["lora_path"], score_range: int = EDITSCORE_DEFAULTS["score_range"],
                 num_pass: int = EDITSCORE_DEFAULTS["num_pass"], **options: Any):
        try:
            from editscore import EditScore
        except ImportError as exc:
            raise ImportError(f"the 'editscore' scorer needs the EditScore package, which is not installed "
                              f"({exc}); on a GPU machine run `pip install -e .[cluster]`, or set "
                              f"scorer = 'rule-standin' for CPU runs on synthetic pairs") from exc
        self.score_range, self.num_pass = score_range, num_pass
        self.model = EditScore(backbone=backbone, model_name_or_path=model_name_or_path, enable_lora=bool(lora_path),
                               lora_path=lora_path, score_range=score_range, num_pass=num_pass, **options)

    def score(self, pair: Mapping[str, Any], instruction: str) -> dict[str, float]:
        images = [_pil(pair["source_image"]), _pil(pair["target_image"])]
        return parse_editscore_result(self.model.evaluate(images, instruction))

    @property
    def batched(self) -> bool:
        """Whether `score_batch` goes through `EditScore.batch_evaluate` (a vLLM backbone, one pass)."""
        return hasattr(getattr(self.model, "model", None), "batch_inference") and self.num_pass == 1

    def score_batch(self, pairs: Sequence[Mapping[str, Any]], instructions: Sequence[str]) -> list:
        """Per pair, its four fields or the ScoreFailure that stands for them (`batch_evaluate` when `batched`,
        else `evaluate` pair by pair)."""
        if not self.batched:
            return [_try(self.score, pair, text) for pair, text in zip(pairs, instructions)]
        from editscore.json_parser import parse_vlm_output_to_dict

        images = [[_pil(pair["source_image"]), _pil(pair["target_image"])] for pair in pairs]
        outputs = self.model.batch_evaluate(images, list(instructions))
        if len(outputs) != len(pairs):
            raise ScoreFailure(f"EditScore.batch_evaluate returned {len(outputs)} results for {len(pairs)} pairs")
        return [_try(parse_editscore_batch_output, out, parse_vlm_output_to_dict, self.score_range) for out in outputs]


def parse_editscore_batch_output(output: Mapping[str, Any], parse: Any, score_range: int) -> dict[str, float]:
    """The four fields of one `EditScore.batch_evaluate` result, read from its raw replies with `parse`
    (EditScore's parser): the SC reply scores [prompt following, consistency], the PQ reply [quality, ...];
    each is divided by score_range / 10 and overall = sqrt(min(SC) x PQ), as `EditScore.evaluate` does."""
    sc = parse(output.get("SC_raw_output", "")).get("score", [])
    pq = parse(output.get("PQ_raw_output", "")).get("score", [])
    if len(sc) < 2 or not pq:
        raise ScoreFailure(f"EditScore's reply gives {len(sc)} of 2 SC and {len(pq)} PQ score(s); its batch API "
                           "would have put the middle of the range in their place")
    unit = score_range / 10
    following, consistency, quality = sc[0] / unit, sc[1] / unit, min(pq) / unit
    if min(following, consistency, quality) < 0:
        raise ScoreFailure(f"EditScore's reply has a negative score: SC {sc}, PQ {pq}")
    return check_scores({"prompt_following": following, "consistency": consistency, "perceptual_quality": quality,
                         "overall": math.sqrt(min(following, consistency) * quality)}, who="EditScore")


def _try(function, *args):
    """function(*args), or the exception it raised (a failure of one pair, never a guess)."""
    try:
        return function(*args)
    except Exception as exc:  # recorded by score_pairs as this pair's error
        return exc


class RuleStandinScorer:
    """CPU STAND-IN for EditScore on pairs with structured changes (see the module docstring)."""

    name = "rule-standin"
    needs_images = False  # reads `changes` only

    def __init__(self):
        self.judge = RuleJudge()

    def score(self, pair: Mapping[str, Any], instruction: str) -> dict[str, float]:
        if not pair.get("changes"):
            raise ScoreFailure("no structured changes: the rule stand-in scores synthetic pairs only "
                               "(use scorer='editscore' for real pairs)")
        if not isinstance(instruction, str) or not instruction.strip():
            raise ScoreFailure("empty instruction")
        result = self.judge.score(pair["changes"], instruction)
        following = 2.5 * (result["accuracy"] - 1)
        consistency = 2.5 * (result["completeness"] - 1)
        quality = 10.0
        return {"prompt_following": following, "consistency": consistency, "perceptual_quality": quality,
                "overall": math.sqrt(min(following, consistency) * quality)}


SCORERS = {"editscore": EditScoreScorer, "rule-standin": RuleStandinScorer}


def make_scorer(name: str, **params: Any):
    """A scorer by name: `editscore` (params: backbone, model_name_or_path, lora_path, score_range,
    num_pass) or `rule-standin` (no params)."""
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; expected one of {sorted(SCORERS)}")
    return SCORERS[name](**params)


def _pil(image: Any):
    """A PIL image from a decoded image, a `datasets` image dict or a path."""
    import io

    from PIL import Image

    if isinstance(image, Image.Image):
        return image
    if isinstance(image, Mapping):
        return Image.open(io.BytesIO(image["bytes"])) if image.get("bytes") else Image.open(image["path"])
    return Image.open(image)


def _read_cache(path: Path, scorer_name: str) -> dict[tuple[str, str], dict]:
    """Successful scores of `scorer_name` by (id, instruction); a torn line (a killed run) is scored again."""
    records, torn = jsonl_cache.read_records(path, required=("id", "instruction", "scorer", "scores"),
                                             what="score-cache")
    if torn:
        log.warning("%s: skipped %d unreadable line(s) (a run killed while writing)", path, len(torn))
    return {(item["id"], item["instruction"]): item["scores"] for item in records
            if item["scorer"] == scorer_name and item["scores"] is not None}


def score_pairs(scorer, pairs: Sequence[Mapping[str, Any]], instructions: Sequence[str], *,
                cache_path: str | Path | None = None, progress: bool = False, batch_size: int = 32) -> list[Scored]:
    """Score each (pair, instruction); a pair whose scorer raises or replies badly gets `error`, no score.

    A scorer with `batched` true is called `batch_size` pairs at a time (`score_batch`), others pair by pair.
    With `cache_path`, earlier successful scores of the same (id, instruction, scorer) are reused and
    every new result is appended as it comes (failures are tried again on the next run)."""
    from tqdm.auto import tqdm

    if len(pairs) != len(instructions):
        raise ValueError(f"{len(pairs)} pairs but {len(instructions)} instructions")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    path = Path(cache_path) if cache_path is not None else None
    cached = _read_cache(path, scorer.name) if path is not None else {}
    step = batch_size if getattr(scorer, "batched", False) else 1
    results: dict[int, Scored] = {}
    todo = []
    for k, (pair, instruction) in enumerate(zip(pairs, instructions)):
        key = (pair["id"], instruction)
        if key in cached:
            results[k] = Scored(pair["id"], instruction, check_scores(cached[key], who="cache"))
        else:
            todo.append(k)
    sink = jsonl_cache.AppendWriter(path) if path is not None else None
    try:
        with tqdm(total=len(pairs), initial=len(results), desc=f"score ({scorer.name})", disable=not progress) as bar:
            for start in range(0, len(todo), step):
                chunk = todo[start:start + step]
                rows, texts = [pairs[k] for k in chunk], [instructions[k] for k in chunk]
                answers = scorer.score_batch(rows, texts) if step > 1 else [_try(scorer.score, rows[0], texts[0])]
                for k, pair, instruction, answer in zip(chunk, rows, texts, answers):
                    if not isinstance(answer, Exception):
                        answer = _try(lambda values: check_scores(values, who=scorer.name), answer)
                    item = (Scored(pair["id"], instruction, None, f"{type(answer).__name__}: {answer}")
                            if isinstance(answer, Exception) else Scored(pair["id"], instruction, answer))
                    results[k] = item
                    if sink is not None:
                        sink.append({"id": item.id, "instruction": instruction, "scorer": scorer.name,
                                     "scores": item.scores, "error": item.error})
                bar.update(len(chunk))
    finally:
        if sink is not None:
            sink.close()
    return [results[k] for k in range(len(pairs))]
