"""Quality scorers for the SFT filter (paper §4.1): how well an instruction matches a pair's edit.

Every scorer returns EditScore's four fields on 0–10: `prompt_following`, `consistency`,
`perceptual_quality`, `overall`. Backends:

- `editscore`: the EditScore reward model (`pip install -e .[cluster]`, GPU). It is built as
  `editscore.EditScore(backbone=..., model_name_or_path=..., enable_lora=..., lora_path=...,
  score_range=..., num_pass=...)` and called as `.evaluate([source, target], instruction)`, which
  returns the four fields already divided down to 0–10 (`overall` = sqrt(min(SC) × PQ)).
  When its model's reply does not parse twice, EditScore itself falls back to a *random* score and
  says so in the reasoning ("guess_if_cannot_parse"); we count such a reply as a failure.
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
        self.model = EditScore(backbone=backbone, model_name_or_path=model_name_or_path, enable_lora=bool(lora_path),
                               lora_path=lora_path, score_range=score_range, num_pass=num_pass, **options)

    def score(self, pair: Mapping[str, Any], instruction: str) -> dict[str, float]:
        images = [_pil(pair["source_image"]), _pil(pair["target_image"])]
        return parse_editscore_result(self.model.evaluate(images, instruction))


class RuleStandinScorer:
    """CPU STAND-IN for EditScore on pairs with structured changes (see the module docstring)."""

    name = "rule-standin"
    needs_images = False  # reads `changes` only

    def __init__(self):
        from editcaption.eval.judges import RuleJudge

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
                cache_path: str | Path | None = None, progress: bool = False) -> list[Scored]:
    """Score each (pair, instruction); a pair whose scorer raises or replies badly gets `error`, no score.

    With `cache_path`, earlier successful scores of the same (id, instruction, scorer) are reused and
    every new result is appended as it comes (failures are tried again on the next run)."""
    from tqdm.auto import tqdm

    if len(pairs) != len(instructions):
        raise ValueError(f"{len(pairs)} pairs but {len(instructions)} instructions")
    path = Path(cache_path) if cache_path is not None else None
    cached = _read_cache(path, scorer.name) if path is not None else {}
    out: list[Scored] = []
    sink = jsonl_cache.AppendWriter(path) if path is not None else None
    try:
        for pair, instruction in tqdm(zip(pairs, instructions), total=len(pairs), desc=f"score ({scorer.name})",
                                      disable=not progress):
            key = (pair["id"], instruction)
            if key in cached:
                out.append(Scored(pair["id"], instruction, check_scores(cached[key], who="cache")))
                continue
            try:
                item = Scored(pair["id"], instruction, check_scores(scorer.score(pair, instruction), who=scorer.name))
            except Exception as exc:  # any failure of the scorer on this pair is counted, never guessed
                item = Scored(pair["id"], instruction, None, f"{type(exc).__name__}: {exc}")
            out.append(item)
            if sink is not None:
                sink.append({"id": item.id, "instruction": instruction, "scorer": scorer.name,
                             "scores": item.scores, "error": item.error})
    finally:
        if sink is not None:
            sink.close()
    return out
