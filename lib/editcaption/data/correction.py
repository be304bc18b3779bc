"""SIMULATED CORRECTOR: what an annotator correcting a model's instruction does, for CPU runs.

The paper's chosen answers are human corrections of the SFT model's failed instructions (§4.2). This
stand-in is no model: given a pair's structured changes and a rejected instruction, it edits the text as
little as it can until the rule judge finds no error left, and keeps the rest of the wording, so that the
chosen and the rejected answer differ where the error is and nowhere else:

- a change stated wrongly (a reversed direction, a wrong colour, the wrong flip axis): one word is
  substituted, or the clause is rewritten in the wording of the change closest to it (which also inserts a
  missing direction or colour);
- a change not described at all: a clause for it replaces the clause that misdescribed it, or is appended;
- a change not described at all is joined on in the form the reference instructions use for its role (" and "
  after another primary edit, ", then " for a view change after one, ". Also, " for a secondary change; a primary
  change missing from a text that speaks only of secondary changes goes first, and the text follows as "also"),
  never in a form of its own;
- a clause about something no change touches (an edit that did not happen), a repeated clause, a no-op, or
  vague wording: the clause is deleted, as an annotator would, or a change's clause with vague words
  rewritten in its plain wording.

Each candidate edit is checked with the rule judge: of those that remove errors without adding any, the one
closest to the rejected text (token edit distance) is kept, and the search repeats until the text is clean.
A text it cannot make clean is reported as such; the caller then falls back to a clean sample of the same
pair, and to the reference instruction last (`data.preference`).
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from editcaption.world.scenes import VIEW_OPS
from editcaption.world.texts import clause_options
from editcaption.vocab import COLORS, STYLES, TEXTURES
from editcaption.world.rule_judge import RuleJudge

_WORD = re.compile(r"[A-Za-z0-9]+")
MAX_STEPS = 6  # edits per instruction before the corrector gives up
# Words one substitution may swap, each only for another of its class: values and directions, never verbs
# or object nouns (a colour for a colour, a side for a side).
VALUE_CLASSES = (frozenset(COLORS), frozenset(TEXTURES), frozenset(STYLES),
                 frozenset(("left", "right", "up", "down", "top", "bottom")),
                 frozenset(("horizontal", "vertical")), frozenset(("horizontally", "vertically")),
                 frozenset(("in", "out")), frozenset(("brighter", "darker")), frozenset(("larger", "smaller")),
                 frozenset(("clockwise", "counterclockwise")))
_CLASS_OF = {word: group for group in VALUE_CLASSES for word in group}


def words(text: str) -> list[str]:
    """Lower-case word tokens (punctuation dropped): what the edit distance counts."""
    return [w.lower() for w in _WORD.findall(text)]


def token_edit_distance(a: str, b: str) -> int:
    """Levenshtein distance between the word sequences of two texts (insertions, deletions, substitutions)."""
    x, y = words(a), words(b)
    previous = list(range(len(y) + 1))
    for i, xi in enumerate(x, start=1):
        current = [i]
        for j, yj in enumerate(y, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (xi != yj)))
        previous = current
    return previous[-1]


@dataclass(frozen=True)
class Correction:
    """The corrector's result for one rejected instruction."""

    text: str  # the corrected instruction (the last attempt when `ok` is False)
    ok: bool  # the rule judge finds no error in `text`
    distance: int  # token edit distance between the rejected and the corrected text
    steps: tuple[str, ...]  # the edits made, in order
    remaining: tuple[str, ...] = ()  # the judge's reasons for the errors left when `ok` is False


def _error_keys(result: Mapping[str, Any]) -> Counter:
    return Counter((e["type"], e["severity"], e["change_index"]) for e in result["errors"])


def _finish(text: str) -> str:
    """Tidy an edited instruction: single spaces, no stray separators, a capital first letter, a final stop."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;!?])", r"\1", text)
    text = re.sub(r"([,;])(\s*[,;.])+", r"\2", text)
    text = re.sub(r"^(?:(?:and|then|also|additionally)\b[\s,]*)+", "", text, flags=re.IGNORECASE).strip(" ,;")
    text = re.sub(r"(?:[\s,]*\b(?:and|then))+\s*([.!?]?)$", r"\1", text, flags=re.IGNORECASE).strip(" ,;")
    sentences = re.split(r"(?<=[.!?])\s+", text)  # a sentence left with only a connective ("Also.") goes
    text = " ".join(x for x in sentences if not re.fullmatch(r"(?i)(?:also|additionally|and|then)?\W*", x))
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _styled(replacement: str, original: str) -> str:
    """`replacement` with `original`'s surrounding spaces and, when it started with one, its capital letter."""
    lead = original[: len(original) - len(original.lstrip())]
    trail = original[len(original.rstrip()):]
    core = original.strip()
    if core[:1].isupper():
        replacement = replacement[:1].upper() + replacement[1:]
    return f"{lead}{replacement}{trail}"


_ALSO = (". Also, {}", ". Additionally, {}", ", and also {}")  # how the references add secondary changes


def _joined(changes: Sequence[Mapping[str, Any]], k: int, views, text: str, option: str) -> Iterator[tuple[str, str]]:
    """A clause for change k (left out) joined to `text` in the forms the reference instructions (the SFT targets)
    use for its role (world.texts.render_reference_instruction): primary edits first, joined by " and ", view
    changes after them with ", then ", secondary changes last in an "also" sentence. So a secondary change is
    appended as "also"; a primary one is appended after the text's primary clauses, or, when the text speaks
    only of secondary changes (or of nothing the pair has), it goes first and the text follows as "also"."""
    body = text.rstrip().rstrip(".!?")
    change = changes[k]
    if not change.get("primary", True):
        for glue in _ALSO:
            yield f"append '{option}'", body + glue.format(option) + "."
        return
    about_primary = any(changes[j].get("primary", True) for view in views if not view.keep for j in view.mentions)
    if about_primary:
        glue = ", then {}" if change["op"] in VIEW_OPS else " and {}"
        yield f"append '{option}'", body + glue.format(option) + "."
        return
    rest = re.sub(r"^(?:(?:also|additionally|and|then)\b[\s,]*)+", "", body, flags=re.IGNORECASE)
    if not rest:
        yield f"write '{option}'", option + "."
        return
    for glue in _ALSO:
        yield f"put '{option}' first", option + glue.format(rest[:1].lower() + rest[1:]) + "."


class SimulatedCorrector:
    """SIMULATED annotator's correction: minimal, judge-checked edits of a rejected instruction."""

    def __init__(self, judge: RuleJudge | None = None, max_steps: int = MAX_STEPS):
        self.judge = judge or RuleJudge()
        self.max_steps = max_steps

    def correct(self, changes: Sequence[Mapping[str, Any]], rejected: str) -> Correction:
        """Edit `rejected` until the rule judge finds no error (see the module docstring)."""
        current, steps = rejected, []
        result = self.judge.score(changes, current)
        for _ in range(self.max_steps):
            if not result["errors"]:
                break
            before = _error_keys(result)
            best = None
            for label, candidate in self._candidates(changes, current, result):
                text = _finish(candidate)
                if not text or text == current:
                    continue
                scored = self.judge.score(changes, text)
                after = _error_keys(scored)
                if not after <= before or sum(after.values()) >= sum(before.values()):
                    continue  # it must remove an error and add none
                rank = (token_edit_distance(rejected, text), sum(after.values()))
                if best is None or rank < best[0]:
                    best = (rank, label, text, scored)
            if best is None:
                break
            _, label, current, result = best
            steps.append(label)
        ok = not result["errors"]
        return Correction(current, ok, token_edit_distance(rejected, current), tuple(steps),
                          () if ok else tuple(e["reason"] for e in result["errors"]))

    def _candidates(self, changes, text: str, result: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
        """(what the edit does, the edited text) for every edit worth trying against the current errors."""
        views = self.judge.clauses(changes, text)

        def replace(view, new: str) -> str:
            return text[:view.start] + _styled(new, text[view.start:view.end]) + text[view.end:]

        def delete(index: int) -> str:
            view = views[index]
            if index > 0:  # the clause and the separator before it
                return text[:views[index - 1].end] + text[view.end:]
            if len(views) > 1:  # the first clause and the separator after it
                return text[:view.start] + text[views[1].start:]
            return ""

        broken = sorted({e["change_index"] for e in result["errors"] if e["change_index"] is not None})
        for k in broken:
            options = clause_options(dict(changes[k]))
            vocabulary = {w for option in options for w in words(option)}
            own = [v for v in views if k in v.mentions]
            named = set(words(changes[k]["object"])) | set(words(changes[k]["before"]))  # never swapped
            for view in own:
                piece = text[view.start:view.end]
                for option in options:
                    yield f"rewrite '{piece.strip()}' as '{option}'", replace(view, option)
                tokens = [t for t in _WORD.finditer(piece) if t.group().lower() in _CLASS_OF.keys() - named]
                for token in tokens:
                    for word in sorted(vocabulary & _CLASS_OF[token.group().lower()]):
                        if word != token.group().lower():
                            new = piece[:token.start()] + word + piece[token.end():]
                            yield f"'{token.group()}' -> '{word}'", replace(view, new.strip())
            for view in views:
                if view.unsupported:
                    for option in options:
                        yield f"rewrite '{text[view.start:view.end].strip()}' as '{option}'", replace(view, option)
            if not own:
                for option in options:
                    for label, joined in _joined(changes, k, views, text, option):
                        yield label, joined
        if any(e["change_index"] is None for e in result["errors"]):  # unsupported, redundant or vague clauses
            for index, view in enumerate(views):
                piece = text[view.start:view.end]
                if not view.keep:
                    yield f"delete '{piece.strip()}'", delete(index)
                for k in view.mentions:  # vague words in the one clause about a change: its plain wording
                    if any(k in other.mentions for other in views if other is not view):
                        continue
                    for option in clause_options(dict(changes[k])):
                        yield f"rewrite '{piece.strip()}' as '{option}'", replace(view, option)


CHOSEN_SOURCES = ("correction", "clean-sample", "reference")


@dataclass(frozen=True)
class ChosenAnswer:
    """The chosen answer of one preference pair and where it came from."""

    text: str
    source: str  # one of CHOSEN_SOURCES
    distance: int  # token edit distance to the rejected answer
    steps: tuple[str, ...] = ()  # the corrector's edits (source "correction")


def choose_answers(changes_by_id: Mapping[str, Sequence[Mapping[str, Any]]], rejected: Mapping[str, str],
                   clean_alternatives: Mapping[str, Sequence[str]], references: Mapping[str, str], *,
                   corrector: SimulatedCorrector | None = None) -> dict[str, ChosenAnswer]:
    """id -> the chosen answer for its rejected text: the corrector's minimal correction when it makes the
    text clean, else a clean candidate of the same pair (the closest one), else the pair's reference
    instruction. Every answer differs from the rejected text."""
    corrector = corrector or SimulatedCorrector()
    out = {}
    for pid, text in rejected.items():
        fixed = corrector.correct(changes_by_id[pid], text)
        if fixed.ok and fixed.text.strip() != text.strip():
            out[pid] = ChosenAnswer(fixed.text, "correction", fixed.distance, fixed.steps)
            continue
        alternatives = [t for t in clean_alternatives.get(pid, ()) if t.strip() != text.strip()]
        if alternatives:
            best = min(alternatives, key=lambda t: token_edit_distance(text, t))
            out[pid] = ChosenAnswer(best, "clean-sample", token_edit_distance(text, best))
            continue
        reference = references.get(pid, "")
        if not reference.strip():
            raise ValueError(f"pair {pid}: no correction, no clean sample and no reference instruction for the chosen answer")
        out[pid] = ChosenAnswer(reference, "reference", token_edit_distance(text, reference))
    return out
