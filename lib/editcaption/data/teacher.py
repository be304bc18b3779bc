"""SIMULATED TEACHER: a stand-in for the paper's auto-captioner (GLM-4.5V) on CPU runs.

It is no model. It reads a synthetic pair's structured `changes`, writes the instruction with the
synthetic generator's own wording (`render_reference_instruction`) and, at configured rates, injects
the failure modes the paper measured in open VLMs (§1, §4.2):

- orientation: the direction of one primary change becomes its opposite (move, add location, arrow
  pointing, rotation sense: left↔right, up↔down, clockwise↔counterclockwise);
- viewpoint: a primary mirror / rotation / zoom is left out, reversed (horizontal↔vertical, in↔out),
  or described as an edit of one object ("move the blue star to the right" for a mirror);
- detail: one primary change loses its fine-grained value (the colour of an added, removed or new
  object; the new colour, texture, style, word, size, brightness or direction of the others); the
  judge types a dropped left/right/up/down direction as an orientation error (table 6, item 4), and
  the caption's `expected` tags say so;
- secondary: a secondary change (a brightness shift, a small recolouring) is left out;
- vague: a clause with forbidden terms ("slightly adjust ...") is added.

Each mode is drawn once per caption with its rate, for captions where it applies ("eligible": the
pair has a change the mode can act on that no earlier mode has touched); the draw order is the
order above. Every caption records the modes it was eligible for and the ones injected, so tests
and notebooks can hold the injected errors against what a judge finds. Same seed and pair id →
same caption, whatever the order or batch of pairs.
"""
from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

from editcaption import generation
from editcaption.records import RecordError
from editcaption.vocab import COLORS, OPPOSITE, SHAPES
from editcaption.world.rule_judge import RuleJudge
from editcaption.world.scenes import VIEW_OPS
from editcaption.world.texts import render_reference_instruction

NAME = "simulated-teacher"
MODES = ("viewpoint", "orientation", "detail", "secondary", "vague")
# What the rule judge tags for each mode: (error type, severity) of table 6.
EXPECTED_TAG = {"viewpoint": ("viewpoint", "P0"), "orientation": ("orientation", "P0"), "detail": ("detail", "P0"),
                "secondary": ("detail", "P1"), "vague": ("detail", "P2")}
CRITICAL_MODES = frozenset(m for m, (_, severity) in EXPECTED_TAG.items() if severity == "P0")
# Calibrated on 2000 synthetic pairs (seed 0, grid, 128 px) so that the rule judge finds a P0 error in
# ≈ 47 % of the captions, the share the paper measured for open VLMs (47.75 %, table 2).
DEFAULT_RATES = {"orientation": 0.5, "viewpoint": 0.6, "detail": 0.32, "secondary": 0.5, "vague": 0.1}

ORIENTED_OPS = ("move", "add", "motion", "rotate")  # ops whose direction an orientation error reverses
_DIRECTION_DROPS = ("move", "motion")  # ops whose dropped "value" is a spatial direction (an orientation omission)
_SPATIAL_OR_TURN = ("left", "right", "up", "down", "clockwise", "counterclockwise")
# vague clauses hold only words the judge knows and no image-wide word (they must not undo a
# "rotation described as an object edit"); they go before the other extra clauses.
_VAGUE_CLAUSES = ("slightly adjust the overall look", "adjust the rest a bit", "modify the overall look slightly")


@dataclass(frozen=True)
class TeacherCaption:
    """One simulated caption: the text, the modes it could have carried, and the modes injected."""

    text: str
    eligible: tuple[str, ...]
    injected: tuple[str, ...]
    details: tuple[str, ...] = field(default=())  # one line per injected error: what was changed
    expected: tuple[tuple[str, str], ...] = field(default=())  # per injected error: the judge's (type, severity)


def check_rates(rates: Mapping[str, float]) -> dict[str, float]:
    """All five rates, each in [0, 1]; missing ones take DEFAULT_RATES, unknown names are refused."""
    unknown = sorted(set(rates) - set(MODES))
    if unknown:
        raise ValueError(f"unknown teacher error modes {unknown}; expected some of {MODES}")
    out = {**DEFAULT_RATES, **rates}
    for mode, rate in out.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
            raise ValueError(f"teacher rate for {mode!r} must be a number in [0, 1], got {rate!r}")
    return {m: float(out[m]) for m in MODES}


def _head(obj: str) -> str:
    """The object's noun without its colour ("red star" -> "star")."""
    return " ".join(w for w in obj.split() if w not in COLORS) or obj


def _is_viewpoint(change: Mapping) -> bool:
    return change["primary"] and change["op"] in VIEW_OPS and (change["op"] != "rotate" or change["object"] == "image")


def _orientable(change: Mapping) -> bool:
    return change["primary"] and change["op"] in ORIENTED_OPS and change["direction"] in _SPATIAL_OR_TURN


def _colour(name: str) -> str:
    return next((w for w in name.split() if w in COLORS), "")


def _detailable(change: Mapping) -> bool:
    if change["op"] == "replace" and _colour(change["before"]) == _colour(change["after"]):
        return False  # the old object's colour would still state the new one
    return change["primary"] and not _is_viewpoint(change) and change["op"] in _VALUE_DROPS


def _drop_colour(change: dict) -> tuple[dict, str]:
    """add / remove / replace without the colour of the object concerned (done by the generator's wording)."""
    op = change["op"]
    if op == "add":
        return ({**change, "object": _head(change["object"]), "after": ""},
                f"colour {change['after']} of the added object dropped")
    if op == "remove":
        return ({**change, "object": _head(change["object"]), "before": ""},
                f"colour {change['before']} of the removed object dropped")
    return {**change, "after": _head(change["after"])}, f"colour of the new {_head(change['after'])} dropped"


# op -> clause without the target value ("{obj}" is the changed object's name)
_VALUE_DROPS = {
    "add": None, "remove": None, "replace": None,  # handled by _drop_colour
    "color": ("change the color of the {obj}", "recolor the {obj}"),
    "background": ("change the background color", "recolor the background"),
    "material": ("change the texture of the {obj}", "give the {obj} a different texture"),
    "style": ("change the style of the whole image", "give the whole image a new style"),
    "text": ("change the text on the {obj}", "change the word on the {obj}"),
    "resize": ("resize the {obj}", "change the size of the {obj}"),
    "tone": ("change the brightness of the whole image", "change the lighting of the whole image"),
    "move": ("move the {obj}", "shift the {obj} to another place"),
    "motion": ("change the direction of the {obj}", "turn the {obj} to point elsewhere"),
}


def _stray_object(rng: random.Random, changes: list[Mapping]) -> str:
    """A coloured shape no change names (what a captioner that misreads the view describes instead)."""
    named = {w for c in changes for w in (c["object"] + " " + c["before"] + " " + c["after"]).split()}
    return f"{rng.choice(list(COLORS))} {rng.choice([s for s in SHAPES if s not in named])}"


def _viewpoint_error(rng: random.Random, change: dict, changes: list[Mapping]) -> tuple[dict | None, str, str]:
    """(changed change or None when left out, extra clause or "", what happened)."""
    op, direction = change["op"], change["direction"]
    ways = ["missed", "object"] + (["reversed"] if op in ("mirror", "zoom") else [])
    way = rng.choice(ways)
    if way == "missed":
        return None, "", f"{op} {direction} left out"
    if way == "reversed":
        return {**change, "direction": OPPOSITE[direction]}, "", f"{op} {direction} stated as {OPPOSITE[direction]}"
    thing = _stray_object(rng, changes)
    if op == "mirror":
        side = rng.choice(("left", "right") if direction == "horizontal" else ("up", "down"))
        clause = f"move the {thing} {'to the ' + side if side in ('left', 'right') else side}"
    elif op == "rotate":
        clause = f"rotate the {thing} 90 degrees {direction}"
    else:
        clause = f"make the {thing} {'larger' if direction == 'in' else 'smaller'}"
    return None, clause, f"{op} {direction} described as an object edit: '{clause}'"


def simulate_caption(changes: Iterable[Mapping[str, Any]], rates: Mapping[str, float],
                     rng: random.Random) -> TeacherCaption:
    """One caption for a pair's changes, with errors injected at `rates` (see the module docstring)."""
    rates = check_rates(rates)
    changes = [dict(c) for c in changes]
    if not changes:
        raise ValueError("the simulated teacher needs a pair's structured changes (synthetic pairs have them)")
    out: list[dict | None] = list(changes)  # None: left out
    touched: set[int] = set()
    extra: list[str] = []
    eligible, injected, details, expected = [], [], [], []

    def candidates(keep) -> list[int]:
        return [i for i, c in enumerate(changes) if i not in touched and keep(c)]

    checks = {"viewpoint": _is_viewpoint, "orientation": _orientable, "detail": _detailable,
              "secondary": lambda c: not c["primary"]}
    for mode in MODES:
        pool = candidates(checks[mode]) if mode != "vague" else [-1]
        if not pool:
            continue
        eligible.append(mode)
        if rng.random() >= rates[mode]:
            continue
        injected.append(mode)
        if mode == "vague":
            extra.insert(0, rng.choice(_VAGUE_CLAUSES))
            details.append("vague wording added")
            expected.append(EXPECTED_TAG[mode])
            continue
        i = rng.choice(pool)
        touched.add(i)
        change = changes[i]
        dropped_direction = mode == "detail" and change["op"] in _DIRECTION_DROPS
        expected.append(("orientation", "P0") if dropped_direction else EXPECTED_TAG[mode])
        if mode == "viewpoint":
            out[i], clause, what = _viewpoint_error(rng, change, changes)
            extra += [clause] if clause else []
        elif mode == "orientation":
            out[i] = {**change, "direction": OPPOSITE[change["direction"]]}
            if change["op"] == "motion":
                out[i]["after"] = f"pointing {OPPOSITE[change['direction']]}"
            what = f"{change['op']} {change['object']}: {change['direction']} stated as {OPPOSITE[change['direction']]}"
        elif mode == "detail" and _VALUE_DROPS[change["op"]] is None:
            out[i], what = _drop_colour(change)
        elif mode == "detail":
            out[i] = None
            extra.append(rng.choice(_VALUE_DROPS[change["op"]]).format(obj=change["object"]))
            what = f"{change['op']} {change['object']}: target value {change['after'] or change['direction']} dropped"
        else:
            out[i] = None
            what = f"secondary {change['op']} {change['object']} left out"
        details.append(f"{mode}: {what}")
    return TeacherCaption(_assemble([c for c in out if c is not None], extra, rng), tuple(eligible),
                          tuple(injected), tuple(details), tuple(expected))


def _assemble(kept: list[dict], extra: list[str], rng: random.Random) -> str:
    """The generator's instruction for the kept changes, then the extra clauses."""
    text = render_reference_instruction(kept, rng).rstrip(".") if kept else ""
    if extra:
        tail = ", and ".join(extra) if kept or len(extra) > 2 else " and ".join(extra)
        text = f"{text}, {tail}" if text else tail
    return text[:1].upper() + text[1:] + "."


class SimulatedTeacher(generation.CaptionBackend):
    """SIMULATED caption backend `simulated-teacher`: captions from structured GT with injected errors.

    A `generation.CaptionBackend` (same `generate` / `caption`, cache and stats); the pairs must carry
    `changes`. The cache key's model string holds the seed and the rates, so other settings never reuse
    its lines. `captions` keeps each pair's TeacherCaption (what was injected), cached or not."""

    name = NAME

    def __init__(self, seed: int = 0, rates: Mapping[str, float] | None = None):
        self.seed = seed
        self.rates = check_rates(rates or {})
        super().__init__(f"{NAME}(seed={seed}, " + ", ".join(f"{m}={r:g}" for m, r in self.rates.items()) + ")")
        self.captions: dict[str, TeacherCaption] = {}  # pair id -> its simulated caption

    def simulate(self, pair_id: str, changes: Iterable[Mapping[str, Any]]) -> TeacherCaption:
        """The caption of one pair (its own RNG stream: seed and id)."""
        result = simulate_caption(changes, self.rates, random.Random(f"teacher-{self.seed}-{pair_id}"))
        self.captions[pair_id] = result
        return result

    def caption(self, pairs, prompt: str = generation.INSTRUCTION_PROMPT, **options: Any) -> list:
        """`CaptionBackend.caption`; the prompt is not used (no model reads it)."""
        if hasattr(pairs, "column_names") and "changes" not in pairs.column_names:
            raise RecordError("the simulated teacher needs the pairs' structured changes (synthetic pairs have them)",
                              field="changes")
        rows = pairs.select_columns(["id", "changes"]) if hasattr(pairs, "select_columns") else pairs
        for index, row in enumerate(rows):
            if "changes" not in row:
                raise RecordError("the simulated teacher needs the pair's structured changes", row=row.get("id", index),
                                  field="changes")
            self.simulate(row["id"], row["changes"])
        return super().caption(pairs, prompt, **options)

    def _run(self, pairs: Iterator[generation.Pair], prompt: str) -> Iterator[generation.Caption]:
        for pair in pairs:
            yield generation.from_text(pair.id, self.captions[pair.id].text)

    def injected_errors(self) -> dict[str, list[str]]:
        """Pair id -> the error modes injected into its caption."""
        return {pair_id: list(c.injected) for pair_id, c in self.captions.items()}

    def write_injected(self, path: str | Path) -> Path:
        """One JSON line per pair: id, eligible modes, injected modes and what each injection changed."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(json.dumps({"id": pid, "eligible": c.eligible, "injected": c.injected,
                                            "details": c.details}) + "\n" for pid, c in self.captions.items()),
                        encoding="utf-8")
        return path


generation.BACKENDS[NAME] = SimulatedTeacher  # generation.make_backend("simulated-teacher", seed=..., rates=...)


def check_against_judge(captions: Mapping[str, TeacherCaption], changes_by_id: Mapping[str, list],
                        rates: Mapping[str, float]) -> dict:
    """The teacher's configured vs measured rates, and whether the rule judge finds what was injected.

    Per mode: configured rate, eligible and injected captions, measured rate (injected / eligible),
    and `found` (injected captions whose judge errors hold the mode's expected type and severity).
    Overall: `p0_share` (captions with a P0 error per the judge), `p0_expected` (captions with an
    injected critical mode), `agree` (captions where both say the same), `clean_judged_clean`."""

    judge = RuleJudge()
    per_mode = {m: {"configured": float(rates[m]), "eligible": 0, "injected": 0, "found": 0} for m in MODES}
    p0 = expected = agree = clean = clean_ok = 0
    for pair_id, caption in captions.items():
        tags = {(e["type"], e["severity"]) for e in judge.score(changes_by_id[pair_id], caption.text)["errors"]}
        for mode in caption.eligible:
            per_mode[mode]["eligible"] += 1
        for mode, tag in zip(caption.injected, caption.expected):
            per_mode[mode]["injected"] += 1
            per_mode[mode]["found"] += tag in tags
        judged_p0 = any(severity == "P0" for _, severity in tags)
        injected_p0 = bool(CRITICAL_MODES.intersection(caption.injected))
        p0, expected, agree = p0 + judged_p0, expected + injected_p0, agree + (judged_p0 == injected_p0)
        if not caption.injected:
            clean, clean_ok = clean + 1, clean_ok + (not tags)
    for stats in per_mode.values():
        stats["measured"] = stats["injected"] / stats["eligible"] if stats["eligible"] else None
    n = max(len(captions), 1)
    return {"n": len(captions), "modes": per_mode, "p0_share": p0 / n, "p0_expected": expected / n,
            "p0_agreement": agree / n, "clean_captions": clean, "clean_judged_clean": clean_ok}
