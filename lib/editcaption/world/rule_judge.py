"""Judges that score an instruction against a pair's ground truth on the paper's three dimensions.

`RuleJudge` needs no model: it reads the structured `changes` of a pair (records.CHANGE_FEATURES) and
the instruction text, decides per change whether the instruction covers it, states it correctly, or
reverses it, and maps the counts through `rubric` (listings B.1-B.3). It also tags the
instruction's errors with the paper's failure modes (orientation / viewpoint / detail, plus "other"
for content no change supports) and table 6 severities (P0 / P1 / P2).

How an instruction is read:
- it is split into clauses on ; , . ! ? newlines, "and" and "then"; a clause is matched to the changes
  whose object it names (head noun or a synonym, plural allowed; when two changed objects share a
  head noun, the colour in the object's name decides) or, for global changes (background, tone, style,
  mirror, rotate of the whole image, zoom), whose keyword it uses ("background", "brighter", "flip",
  "zoom", ...). A clause naming nothing takes the changes of the clause before when it has a pronoun
  ("shorten it") or no unknown word ("then up"); otherwise it is about something else;
- per change, each piece of its target state (a value such as the new colour, or a direction) is
  "stated", "wrong" (another value of the same kind: another colour, texture, style, sign word,
  shape, number or spatial direction), "reversed" (the opposite direction word; add <-> remove) or
  absent. "instead of ..." tails are ignored, and when a clause holds both a direction and its
  opposite, the later one counts ("move the star from the left to the right");
- completeness (listing B.2): a change is a HIT (1) when named with its action type (an op verb, a
  target value or direction; wrong values still hit), a half hit (0.5) when named without what
  changes ("change the dress style": the attribute word, or any edit of an object with one change),
  a MISS (0) when not named or when its direction is reversed;
- accuracy (listing B.1): wrong or reversed statements about a primary change are major (core)
  errors; about a secondary change they are minor. A clause about an object no change touches is a
  minor error when it edits an attribute ("bag to red": an unchanged element) and a hallucination
  when it adds, removes or replaces something ("add hat": a fabricated operation, caps at 2). When
  nothing in the instruction touches any change and it edits an object outside the synthetic world
  ("change car to red") the object is wrong (1). Omissions never cost accuracy (listing B.1);
- clarity (listing B.3): forbidden terms set the ceiling; attribute completeness is the mean over
  changes of the share of target pieces written anywhere in the instruction (right or wrong: clear
  but wrong still counts), 0.5 for a change named without its target;
- clauses that keep something ("keep everything else unchanged") are skipped.
"""
from __future__ import annotations

import json
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

from editcaption import records, rubric
from editcaption.vocab import OBJECTS, OPPOSITE, SHAPES, SIGN_WORDS, STYLES, SYNONYMS, TEXTURES

ERROR_TYPES = (*rubric.ERROR_TYPES, "other")  # "other": content no change of the pair supports
_SEVERITY_RANK = {s: k for k, s in enumerate(rubric.SEVERITIES)}
_TYPE_RANK = {t: i for i, t in enumerate(ERROR_TYPES)}

# --------------------------------------------------------------------------------------------------
# Text normalisation

_APOSTROPHES = re.compile(r"[’‘`´]")
_COUNTERCLOCKWISE = re.compile(r"\b(?:counter|anti)[\s-]*clockwise\b")
_CLAUSE_SPLIT = re.compile(r"[;,.!?:\n()\[\]]+|\band\b|\bthen\b")
_INSTEAD_OF = re.compile(r"\binstead of\b.*$")
_TOKEN = re.compile(r"[a-z0-9]+")


def _normalise(text: str) -> str:
    return _COUNTERCLOCKWISE.sub("counterclockwise", _APOSTROPHES.sub("'", text.lower()))


def _pad(phrase: str) -> str:
    """A phrase as it appears in a padded clause string: ' word word '."""
    return " " + " ".join(_TOKEN.findall(_normalise(phrase))) + " "


def _pads(phrases: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(_pad(p) for p in phrases if _TOKEN.search(p)))


def _singular(word: str) -> str:
    if len(word) > 3 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 2 and word.endswith("s") and not word.endswith(("ss", "us")):
        return word[:-1]
    return word


# --------------------------------------------------------------------------------------------------
# Lexicon: the synthetic vocabulary plus the words instructions about real images use

# Directions that have an opposite beyond vocab.OPPOSITE (the paper's dress example: shorten vs long).
EXTRA_OPPOSITE = {"shorter": "longer", "longer": "shorter", "thinner": "thicker", "thicker": "thinner"}
_OPPOSITE = {**OPPOSITE, **EXTRA_OPPOSITE}
_SPATIAL = ("left", "right", "up", "down")
_EXTRA_CUES = {
    "up": ("upper",),
    "in": ("zooms in", "zoomed in", "zooming in", "close up"),
    "out": ("zooms out", "zoomed out", "zooming out", "further away", "pull back"),
    "larger": ("large", "big", "enlarged", "grows"),
    "smaller": ("small", "tiny", "shrunk", "shrinks", "decrease the size"),
    "brighter": ("brightened", "brighten the image"),
    "darker": ("darkened",),
    "shorter": ("shorten", "shortened", "short"),
    "longer": ("lengthen", "lengthened", "long"),
    "thinner": ("thin",),
    "thicker": ("thick",),
}
# Words stating each direction; the bare words "in"/"out" are too common to count ("in the centre").
DIRECTION_CUES = {
    d: _pads(([d] if d not in ("in", "out") else []) + list(SYNONYMS.get(d, ())) + list(_EXTRA_CUES.get(d, ())))
    for d in _OPPOSITE
}

_CANON = {alt: canon for canon, alts in SYNONYMS.items() for alt in alts if " " not in alt}
_CANON.update({"golden": "gold", "colour": "color"})
_TEXTURE_ALIASES = {
    "solid": ("solid",),
    "striped": ("striped", "stripe", "stripes", "stripy"),
    "dotted": ("dotted", "dot", "dots", "polka", "spotted", "spots"),
    "checkered": ("checkered", "checker", "checkers", "checkerboard", "chequered", "checked"),
}
_STYLE_ALIASES = {
    "plain": ("plain",),
    "outline": ("outline", "outlines", "outlined", "wireframe"),
    "pixelated": ("pixelated", "pixelate", "pixel", "pixels", "pixelized", "pixelised", "pixelation"),
    "inverted": ("inverted", "invert", "inverts", "inversion", "negative"),
}
assert set(_TEXTURE_ALIASES) == set(TEXTURES) and set(_STYLE_ALIASES) == set(STYLES)

# token -> ((class, canonical value), ...): what a single word states.
_VALUE_OF: dict[str, tuple[tuple[str, str], ...]] = {}


def _add_value(token: str, cls: str, canon: str) -> None:
    _VALUE_OF[token] = _VALUE_OF.get(token, ()) + ((cls, canon),)


for _w in rubric.COLOR_WORDS:
    _add_value(_w, "color", _CANON.get(_w, _w))
for _canon, _aliases in _TEXTURE_ALIASES.items():
    for _w in _aliases:
        _add_value(_w, "texture", _canon)
for _canon, _aliases in _STYLE_ALIASES.items():
    for _w in _aliases:
        _add_value(_w, "style", _canon)
for _w in SIGN_WORDS:
    _add_value(_w.lower(), "sign", _w.lower())
for _w in OBJECTS:
    _add_value(_w, "shape", _w)
    for _alt in SYNONYMS.get(_w, ()):
        _add_value(_alt, "shape", _w)
for _d in _SPATIAL:
    for _cue in DIRECTION_CUES[_d]:
        if _cue.count(" ") == 2:  # single-word cues
            _add_value(_cue.strip(), "spatial", _d)
_COLOR_MODIFIERS = frozenset(("light", "dark", "deep", "pale", "bright", "pastel", "vivid"))

# Verbs and keywords (padded phrases).
_ADD = _pads(("add", "adds", "added", "adding", "insert", "inserts", "inserted", "introduce", "introduces",
              "put a", "put an", "place a", "place an", "draw a", "draw an", "include a", "include an"))
_REMOVE = _pads(("remove", "removes", "removed", "removing", "delete", "deletes", "deleted", "erase", "erases",
                 "erased", "eliminate", "take away", "take out", "get rid of"))
_REPLACE = _pads(("replace", "replaces", "replaced", "replacing", "swap", "swaps", "swapped", "substitute",
                  "exchange", "into a", "into an"))
_MOVE = _pads(("move", "moves", "moved", "moving", "shift", "shifts", "shifted", "slide", "slides", "relocate",
               "relocated", "drag", "reposition"))
_FLIP = _pads(("flip", "flips", "flipped", "mirror", "mirrors", "mirrored", "reflect", "reflected"))
_ROTATE = _pads(("rotate", "rotates", "rotated", "rotating", "rotation", "spin", "degrees"))
_ZOOM = _pads(("zoom", "zooms", "zoomed", "zooming", "magnify", "closer", "farther", "close up"))
_RESIZE = _pads(("resize", "resized", "enlarge", "enlarged", "shrink", "shrunk", "scale", "scaled", "grow"))
_RECOLOR = _pads(("recolor", "recolour", "recolored", "recoloured", "paint", "painted", "repaint", "tint", "dye"))
_TONE = _pads(("brightness", "brighter", "darker", "brighten", "darken", "brightened", "darkened", "dim",
               "dimmer", "lighter", "lighten", "exposure", "lighting", "tone"))
_STYLE = _pads(("style", "styled", "stylize", "stylise", "stylized")
               + tuple(w for aliases in _STYLE_ALIASES.values() for w in aliases))
_TEXT = _pads(("text", "word", "words", "read", "reads", "say", "says", "lettering", "writing", "spell", "spells"))
_MOTION = _pads(("point", "points", "pointing", "aim", "aims", "face", "faces", "facing"))
_MATERIAL = _pads(("retexture", "retextured"))
_BACKGROUND = _pads(("background", "backdrop"))
_GENERIC = _pads(("change", "changes", "changed", "make", "makes", "made", "turn", "turns", "turned", "set",
                  "convert", "converted", "transform", "transformed", "edit", "edited", "give", "render",
                  "redraw", "update", "alter", "modify", "adjust", "become", "becomes", "apply"))
_KEEP = _pads(("keep", "keeps", "keeping", "kept", "leave", "unchanged", "remain", "remains", "stay", "stays",
               "preserve", "preserved", "retain", "do not", "don t", "not change", "untouched", "everything else"))
_PRONOUNS = frozenset(("it", "its", "them", "they", "their"))

_OP_VERBS = {"add": _ADD, "remove": _REMOVE, "replace": _REPLACE, "move": _MOVE, "mirror": _FLIP,
             "rotate": _ROTATE, "zoom": _ZOOM, "resize": _RESIZE, "color": _RECOLOR, "tone": _TONE,
             "style": _pads(("stylize", "stylise", "stylized")), "text": _TEXT, "motion": _MOTION,
             "material": _MATERIAL}
_GLOBAL_KEYWORDS = {"background": _BACKGROUND, "tone": _TONE, "style": _STYLE, "mirror": _FLIP, "zoom": _ZOOM,
                    "rotate": _ROTATE + DIRECTION_CUES["clockwise"] + DIRECTION_CUES["counterclockwise"]}
_SCOPE_OBJECTS = frozenset(("", "image", "camera", "scene", "picture", "photo", "view", "background"))
_WHOLE_IMAGE = frozenset(("image", "picture", "photo", "scene", "whole", "entire", "everything", "camera", "view",
                          "frame", "canvas"))
VIEWPOINT_OPS = ("mirror", "rotate", "zoom")
_DIRECTION_OPS = VIEWPOINT_OPS + ("move", "motion", "tone", "resize")  # ops whose target is a direction
# Attribute words that name what changes without saying how ("change the dress style" -> half a hit).
_ATTRIBUTE_WORDS = {
    "color": ("color", "colour", "hue", "shade"), "position": ("position", "location", "placement"),
    "size": ("size", "scale"), "brightness": ("brightness", "lighting", "exposure", "tone"),
    "texture": ("texture", "pattern", "material", "surface"), "style": ("style", "look"),
    "text": ("text", "word", "wording", "lettering", "writing"), "rotation": ("rotation", "angle", "orientation"),
    "orientation": ("orientation",), "zoom": ("zoom",), "pose": ("direction", "pose", "pointing"),
}
_OPS_NAMING_ATTRIBUTE = frozenset(("style", "color", "material", "background", "text", "tone"))

_FUNCTION_WORDS = frozenset("""
a an the to of on in at by for from with into onto over under above below near next beside behind between around
across through toward towards up down off out and or but so then also as than that this these those it its them
they their there here is are was were be been being has have had do does did will would should can could may
might must not no all each every both either any some other others rest same new old whole entire just only
very more most less much many few little bit now again instead still too while such please let one ones two
three four half quarter side sides corner corners center centre middle central edge edges part parts position
place location area region spot space image images picture photo scene canvas frame view camera object objects
shape shapes item items thing things everything something nothing top bottom way degree degrees percent times
color colour colors colours size texture pattern style text word words letter letters surface direction
orientation angle tone brightness lighting margin border empty leaving show shows showing fill fills fit
surrounding surrounds surround visible look looks appear appears becoming becomes become remain remains
whole additionally finally first second third original source target edited result final currently existing
another instead exactly slightly completely fully clearly overall current better nicer improve enhance
optimize optimise process adjust modify
""".split())
# Words that never name an object by themselves (object nouns, synthetic or not, are everything else).
_PHRASES = (_ADD, _REMOVE, _REPLACE, _MOVE, _FLIP, _ROTATE, _ZOOM, _RESIZE, _RECOLOR, _TONE, _STYLE, _TEXT, _MOTION,
            _MATERIAL, _BACKGROUND, _GENERIC, _KEEP, *DIRECTION_CUES.values())
KNOWN_WORDS = frozenset().union(
    _FUNCTION_WORDS, rubric.TARGET_STATE_WORDS, _VALUE_OF, (w for group in _PHRASES for p in group for w in p.split()),
    (w for words in _ATTRIBUTE_WORDS.values() for w in words),
) - frozenset(OBJECTS) - frozenset(a for o in OBJECTS for a in SYNONYMS.get(o, ()))


# --------------------------------------------------------------------------------------------------
# One change, compiled once (cached by its field values)


class _Part(NamedTuple):
    """One piece of a change's target state (a value such as the new colour, or a direction)."""
    target: str  # canonical value or direction
    cues: tuple[str, ...]  # padded phrases stating it
    opposite: tuple[str, ...]  # padded phrases stating the reversed direction
    wrong_class: str  # value class whose other members are wrong ("" none)
    allowed: frozenset  # values of wrong_class that are not wrong (before, after, the object's own colour)


class _Spec(NamedTuple):
    op: str
    primary: bool
    label: str  # for reasons: "move red star (right)"
    is_global: bool
    viewpoint: bool
    name: str  # the object's full name ("red star"), "" for global changes
    heads: frozenset  # words naming the object: head noun, synonyms, replace's new head
    qualifiers: frozenset  # other words of the object's name ("red")
    keywords: tuple[str, ...]  # padded phrases naming a global change
    parts: tuple[_Part, ...]
    verbs: tuple[str, ...]  # padded op verbs (the action type)
    attr_prefixes: tuple[str, ...]  # words naming the changed attribute (half a hit)
    own_colour: str  # colour in the object's name (a descriptor check for the named object)
    allowed_colours: frozenset  # colours that may stand right before the head noun
    words: frozenset  # every word of the change's fields (never "unknown" words)
    current: frozenset  # (class, value) the object or image has before the change ("pink" of a pink ring)


def _words(text: str) -> list[str]:
    return _TOKEN.findall(_normalise(text))


def _value_class(word: str) -> tuple[str, str]:
    hits = _VALUE_OF.get(word)
    if hits:
        return hits[0]
    return "", _CANON.get(word, word)


def _value_part(word: str, allowed: Iterable[str]) -> _Part:
    cls, canon = _value_class(word)
    aliases = {canon, word} | {w for w, vals in _VALUE_OF.items() if (cls, canon) in vals} if cls else {word}
    return _Part(canon, _pads(aliases), (), cls, frozenset(_value_class(a)[1] for a in allowed if a))


def _direction_part(direction: str, before_words: list[str], extra_cues: Iterable[str] = ()) -> _Part:
    opposite = _OPPOSITE.get(direction, "")
    cues = DIRECTION_CUES.get(direction) or _pads([direction])
    cues = tuple(dict.fromkeys(cues + _pads(extra_cues)))
    allowed = {direction, opposite} | {w for w in before_words if w in _SPATIAL}
    return _Part(direction, cues, DIRECTION_CUES.get(opposite, ()),
                 "spatial" if direction in _SPATIAL else "", frozenset(allowed))


def _number_part(value: str) -> _Part:
    return _Part(value, _pads([value]), (), "number", frozenset([value]))


@lru_cache(maxsize=8192)
def _compile(op: str, obj: str, attribute: str, before: str, after: str, direction: str, primary: bool) -> _Spec:
    op = op.strip().lower()
    obj_words, before_words, after_words = _words(obj), _words(before), _words(after)
    direction = " ".join(_words(direction))
    attr_words = _words(attribute)
    is_global = op in ("background", "tone") or (op in _GLOBAL_KEYWORDS and " ".join(obj_words) in _SCOPE_OBJECTS)
    viewpoint = op in VIEWPOINT_OPS and is_global
    head = _CANON.get(obj_words[-1], obj_words[-1]) if obj_words and not is_global else ""
    qualifiers = frozenset(obj_words[:-1]) if head else frozenset()
    own_colour = next((_value_class(w)[1] for w in obj_words[:-1] if _value_class(w)[0] == "color"), "")
    heads = set()
    if head:
        heads |= {head, *SYNONYMS.get(head, ())}
    colours_before = [_value_class(w)[1] for w in before_words if _value_class(w)[0] == "color"]

    parts: list[_Part] = []
    if op == "add":
        parts += [_value_part(w, [w]) for w in after_words]
        if direction:
            parts.append(_direction_part(direction, []))
    elif op == "remove":
        parts += [_value_part(w, [w]) for w in (before_words or obj_words[:-1])]
    elif op == "replace":
        new_head = after_words[-1] if after_words else ""
        if new_head:
            heads |= {_CANON.get(new_head, new_head), *SYNONYMS.get(new_head, ())}
        parts += [_value_part(w, before_words + after_words + obj_words) for w in after_words]
    elif direction or op in _DIRECTION_OPS:
        if direction:  # the after value states the direction too ("mini" for shorter), except a pose or angle
            also = [] if op == "motion" else [w for w in after_words if not w.isdigit()]
            parts.append(_direction_part(direction, before_words, also))
        numbers = [w for w in after_words if w.isdigit()]
        if op == "rotate" and numbers:
            parts.append(_number_part(numbers[0]))
    else:
        parts += [_value_part(w, before_words + after_words + obj_words[:-1]) for w in after_words
                  if w not in obj_words[-1:]]

    keywords: tuple[str, ...] = ()
    if is_global:
        keywords = _GLOBAL_KEYWORDS.get(op, ()) or _pads([op, *attr_words])
    prefixes = set(attr_words) | set(_ATTRIBUTE_WORDS.get(attribute.strip().lower(), ()))
    if op in _OPS_NAMING_ATTRIBUTE:
        prefixes.add(op)
    label = f"{op} {' '.join(obj_words) or 'image'}"
    target = direction or " ".join(after_words)
    if target:
        label += f" ({' '.join(before_words) + ' -> ' if before_words and not direction else ''}{target})"
    all_words = frozenset(obj_words + before_words + after_words + attr_words + direction.split()) | heads
    current = frozenset(_value_class(w) for w in before_words + ([own_colour] if own_colour else [])
                        if _value_class(w)[0])
    return _Spec(op, primary, label, is_global, viewpoint, " ".join(obj_words) if head else "",
                 frozenset(_singular(h) for h in heads) | frozenset(heads), qualifiers, keywords, tuple(parts),
                 _OP_VERBS.get(op, ()), tuple(sorted(prefixes)), own_colour,
                 frozenset([own_colour] + [p.target for p in parts if p.wrong_class == "color"] + colours_before),
                 all_words, current)


# --------------------------------------------------------------------------------------------------
# One clause, analysed once


class _Clause:
    __slots__ = ("padded", "tokens", "words", "values", "before_head", "color_slots", "add", "remove", "replace",
                 "generic", "keep", "pronoun", "assertive", "mentions", "foreign", "global_ops", "global_claim")

    def __init__(self, text: str):
        text = _INSTEAD_OF.sub("", text)
        tokens = _TOKEN.findall(text)
        self.tokens = tokens
        self.padded = " " + " ".join(tokens) + " "
        self.words = frozenset(tokens) | frozenset(_singular(t) for t in tokens)
        values: dict[str, set] = {}
        before_head: dict[str, set] = {}  # word -> colours written right before it ("red star")
        color_slots = []  # (colour, the word after it or "")
        for i, tok in enumerate(tokens):
            for cls, canon in _VALUE_OF.get(tok, ()):
                values.setdefault(cls, set()).add(canon)
                if cls == "color":
                    j = i + 1
                    while j < len(tokens) and tokens[j] in _COLOR_MODIFIERS:
                        j += 1
                    nxt = _singular(tokens[j]) if j < len(tokens) else ""
                    color_slots.append((canon, nxt))
                    if nxt:
                        before_head.setdefault(nxt, set()).add(canon)
            if tok.isdigit():
                values.setdefault("number", set()).add(tok)
        self.color_slots = color_slots
        self.values = values
        self.before_head = before_head
        padded = self.padded
        self.add = any(v in padded for v in _ADD)
        self.remove = any(v in padded for v in _REMOVE)
        self.replace = any(v in padded for v in _REPLACE)
        self.generic = any(v in padded for v in _GENERIC)
        self.keep = any(v in padded for v in _KEEP)
        self.pronoun = not _PRONOUNS.isdisjoint(tokens)
        self.assertive = bool(self.add or self.remove or self.replace or self.generic or values
                              or any(v in padded for group in (_MOVE, _FLIP, _ROTATE, _ZOOM, _RESIZE, _RECOLOR, _TONE)
                                     for v in group))
        self.global_ops = frozenset(op for op, keys in _GLOBAL_KEYWORDS.items() if any(k in padded for k in keys))
        self.assertive = self.assertive or bool(self.global_ops)
        self.mentions: list[int] = []
        self.foreign: list[str] = []
        self.global_claim: frozenset = frozenset()  # whole-image edits it states that no change of the pair has


def _unsupported(clause: _Clause) -> bool:
    """An assertion about nothing any change touches (it must name something: a noun or a value); a clause
    stating a whole-image edit the pair lacks is reported as such (`global_claim`), not here."""
    return (not clause.mentions and clause.assertive and not clause.keep and not clause.global_claim
            and bool(clause.foreign or clause.values))


class ClauseView(NamedTuple):
    """One clause as the judge reads it: its span in the instruction and what it was matched to."""
    start: int
    end: int
    mentions: tuple[int, ...]  # indices of the changes the clause is about
    unsupported: bool  # asserts an edit no change supports (of something no change touches, or of the whole image)
    keep: bool  # a "keep everything else" clause (skipped)
    redundant: bool = False  # repeats an earlier clause, or changes something to the value it already has


def _candidates(clause: _Clause, cls: str, spec: _Spec) -> set:
    """Values of class `cls` the clause asserts about `spec`'s object; a colour right before another
    noun describes that noun ("next to the blue circle") and is left out."""
    if cls != "color":
        return clause.values.get(cls, set())
    return {colour for colour, nxt in clause.color_slots
            if not nxt or nxt in spec.heads or (nxt in KNOWN_WORDS and nxt not in OBJECTS)}


def _last(padded: str, cues: tuple[str, ...]) -> int:
    return max((padded.rfind(c) for c in cues), default=-1)


def _prefix_hit(tokens: list[str], prefixes: tuple[str, ...]) -> bool:
    return any(t.startswith(p) and len(t) - len(p) <= 2 for t in tokens for p in prefixes)


def _severity(spec: _Spec) -> str:
    return "P0" if spec.primary or spec.viewpoint else "P1"


def _omission_type(spec: _Spec, part: _Part) -> str:
    """The failure mode of a target piece left out: a view change's is viewpoint; a left/right/up/down or
    turning direction's is orientation (table 6, item 4: omissions of orientation); any other value's
    (a colour, a brightness) is detail."""
    if spec.viewpoint:
        return "viewpoint"
    return "orientation" if _direction_error_type(part.target) == "orientation" else "detail"


def _direction_error_type(direction: str) -> str:
    if direction in ("in", "out", "horizontal", "vertical"):
        return "viewpoint"
    if direction in _SPATIAL or direction in ("clockwise", "counterclockwise"):
        return "orientation"
    return "detail"


_TEXT_FIELDS = ("op", "object", "attribute", "before", "after", "direction")


ERROR_KINDS = ("omitted", "wrong", "op", "unsupported", "redundant", "vague")  # what went wrong, whatever the mode


def _error(etype: str, severity: str, index: int | None, reason: str, kind: str) -> dict:
    """One error: its failure mode (type), severity, the change it concerns (None: none), why, and its kind:
    `omitted` (a change or a piece of it left out), `wrong` (a value or direction stated wrongly), `op` (the
    edit described as another kind of edit), `unsupported` (an edit no change supports), `redundant` (a
    repeated clause or a no-op), `vague` (forbidden wording)."""
    return {"type": etype, "severity": severity, "change_index": index, "reason": reason, "kind": kind}


# Edits whose verbs, said of a changed object, state an edit of their own kind (a verb of an op the pair lacks
# is a fabricated operation); a pointing change may be told as a rotation of the object, a background's as
# a recolouring.
_FOREIGN_OPS = ("move", "mirror", "rotate", "zoom", "resize", "color", "material")
_SAME_EDIT = frozenset({("motion", "rotate"), ("background", "color")})
_CONNECTIVES = frozenset(("and", "also", "then", "additionally", "finally", "next", "please"))
_NAMED_OBJECTS = frozenset(OBJECTS) | frozenset(a for o in OBJECTS for a in SYNONYMS.get(o, ()) if " " not in a)
_VALUE_CLASSES = ("color", "texture", "style", "sign")


def _stated(spec: _Spec, clause: _Clause) -> frozenset:
    """What a clause says about a change: the target pieces it states and "op" when it uses the change's verb."""
    said = {part.target for part in spec.parts if _last(clause.padded, part.cues) >= 0}
    if any(v in clause.padded for v in spec.verbs):
        said.add("op")
    return frozenset(said)


def _keeps_value(spec: _Spec, clause: _Clause) -> bool:
    """The clause sets the changed object's value to the one it already has ("recolor the pink ring pink")."""
    for cls in _VALUE_CLASSES:  # a colour written before a noun names the object, it asserts nothing
        asserted = ({colour for colour, nxt in clause.color_slots if nxt not in _NAMED_OBJECTS | spec.heads}
                    if cls == "color" else clause.values.get(cls, set()))
        current = {value for c, value in spec.current if c == cls}
        targets = {part.target for part in spec.parts if part.wrong_class == cls}
        if asserted and current and asserted <= current and not asserted & targets:
            return True
    return False


def _no_op(specs: list[_Spec], clause: _Clause) -> bool:
    """The clause changes something to the value it already has: every value it asserts for a changed object
    is that object's current value, or, for an object no change touches, the colour it is named with."""
    if clause.add or clause.remove or clause.replace:
        return False
    if any(_keeps_value(specs[k], clause) for k in clause.mentions):
        return True
    if not clause.mentions and clause.foreign:
        named = {colour for colour, nxt in clause.color_slots if nxt in _NAMED_OBJECTS}
        asserted = {colour for colour, nxt in clause.color_slots if nxt not in _NAMED_OBJECTS}
        return bool(asserted) and asserted <= named
    return False


def _redundant_clauses(specs: list[_Spec], clauses: list[_Clause]) -> list[tuple[int, str]]:
    """(clause index, why) for table 6 item 7 (P2, redundant): a clause that repeats an earlier one (the same
    words, or the same change with nothing new stated about it) and a no-op."""
    out = []
    seen: dict[tuple, int] = {}
    for j, clause in enumerate(clauses):
        if clause.keep or not clause.assertive:
            continue
        key = tuple(t for t in clause.tokens if t not in _CONNECTIVES)
        what = " ".join(clause.tokens)
        if key in seen:
            out.append((j, f"'{what}' repeats an earlier clause"))
        elif clause.mentions and any(
                set(earlier.mentions) == set(clause.mentions) and not earlier.keep
                and all(_stated(specs[k], clause) and _stated(specs[k], clause) <= _stated(specs[k], earlier)
                        for k in clause.mentions)
                for earlier in clauses[:j]):
            out.append((j, f"'{what}' says again what an earlier clause said"))
        elif _no_op(specs, clause):
            out.append((j, f"'{what}' changes something to the value it already has (no-op)"))
        seen.setdefault(key, j)
    return out


class RuleJudge:
    """Scores an instruction against structured changes with the paper's rubric (no model involved)."""

    name = "rule"

    def score_pair(self, pair_row: Mapping[str, Any], instruction: str) -> dict:
        """Score `instruction` against a pair row (reads `row["changes"]`)."""
        if "changes" not in pair_row:
            raise records.RecordError("missing field", row=pair_row.get("id"), field="changes")
        return self.score(pair_row["changes"], instruction)

    def score_file(self, pairs: Any, instructions_path: str | Path, out_path: str | Path, *,
                   on_error: str = "raise") -> dict:
        """`score_file` with this judge (the `editcaption score --judge rule` command)."""
        return score_file(pairs, instructions_path, out_path, on_error=on_error, judge=self)

    def score(self, changes: list[Mapping[str, Any]], instruction: str) -> dict:
        """Accuracy, completeness, clarity, composite, coverage, hits/misses (change indices), forbidden
        terms, and the errors found ({type, severity, change_index, reason}) with the worst one's
        type and severity ("" for a clean instruction)."""
        specs, clauses, _ = self._read(changes, instruction)
        text = _normalise(instruction)

        errors: list[dict] = []
        credits: list[float] = []
        explicit: list[float] = []
        core = noncore = 0
        names = [s.name for s in specs]
        pair_ops = frozenset(s.op for s in specs)
        whole = " " + " ".join(_TOKEN.findall(text)) + " "
        for i, spec in enumerate(specs):
            alone = spec.is_global or names.count(spec.name) == 1
            credit, stated_parts, err, n_factual = self._judge_change(i, spec, [c for c in clauses if i in c.mentions],
                                                                      whole, alone, pair_ops)
            credits.append(credit)
            errors += err
            if spec.primary:
                core += n_factual
            else:
                noncore += n_factual
            if spec.parts:
                explicit.append(max(stated_parts / len(spec.parts), 0.5 if credit > 0 else 0.0))
            else:
                explicit.append(1.0 if credit > 0 else 0.0)

        hallucinated, touched = False, any(c.mentions for c in clauses)
        # clauses about nothing any change touches; they must name something (a noun or a value) to count
        unsupported = [c for c in clauses if _unsupported(c)]
        wrong_object = (not touched and bool(unsupported)
                        and all(c.foreign and not any(w in OBJECTS for w in c.foreign) for c in unsupported))
        redundant = _redundant_clauses(specs, clauses)
        no_ops = {j for j, why in redundant if why.endswith("(no-op)")}
        for j, clause in enumerate(clauses):
            what = " ".join(clause.tokens)
            if clause.global_claim:  # table 6: a view change that did not happen is item 4 (P0), a global
                ops = ", ".join(sorted(clause.global_claim))  # attribute that did not change item 5 (P1)
                if not clause.global_claim.isdisjoint(VIEWPOINT_OPS):
                    hallucinated = True
                    errors.append(_error("viewpoint", "P0", None, f"'{what}' states a viewpoint change ({ops}) the "
                                                                  "pair does not show (hallucination)", "unsupported"))
                else:
                    noncore += 1
                    errors.append(_error("detail", "P1", None, f"'{what}' states a global attribute change ({ops}) "
                                                               "the pair does not show", "unsupported"))
            elif clause in unsupported and j not in no_ops:
                if wrong_object:
                    errors.append(_error("other", "P0", None, f"'{what}' is about an object no change touches",
                                         "unsupported"))
                elif clause.add or clause.remove or clause.replace:
                    hallucinated = True
                    errors.append(_error("detail", "P0", None,
                                         f"'{what}' asserts an edit no change supports (hallucination)", "unsupported"))
                else:
                    noncore += 1
                    errors.append(_error("detail", "P1", None, f"'{what}' edits an element no change touches",
                                         "unsupported"))
        for _, why in redundant:
            errors.append(_error("detail", "P2", None, why, "redundant"))

        forbidden = rubric.find_forbidden_terms(instruction)
        if forbidden:
            errors.append(_error("detail", "P2", None, f"vague wording: {', '.join(forbidden)}", "vague"))

        primary = [k for k, s in enumerate(specs) if s.primary] or list(range(len(specs)))
        coverage = sum(credits[k] for k in primary) / len(primary)
        covers_secondary = any(credits[k] > 0 for k, s in enumerate(specs) if not s.primary)
        accuracy = rubric.accuracy_score(core, noncore, hallucinated, coverage, wrong_object)
        completeness = rubric.completeness_from_coverage(coverage, covers_secondary)
        info_points = len({v for c in clauses for vals in c.values.values() for v in vals})
        info_points += sum(1 for k in range(len(specs)) if credits[k] > 0)
        # a redundant clause costs clarity as a forbidden word does (table 10's score-2 row names both)
        clarity = rubric.clarity_score(len(forbidden) + len(redundant), sum(explicit) / len(explicit),
                                       len(whole.split()), info_points)
        worst = min(errors, key=lambda e: (_SEVERITY_RANK[e["severity"]], _TYPE_RANK[e["type"]]), default=None)
        return {
            "accuracy": accuracy,
            "completeness": completeness,
            "clarity": clarity,
            "composite": rubric.composite(accuracy, completeness, clarity),
            "coverage": round(coverage, 6),
            "hits": [k for k, c in enumerate(credits) if c > 0],
            "misses": [k for k, c in enumerate(credits) if c == 0],
            "forbidden_terms": forbidden,
            "errors": errors,
            "error_type": worst["type"] if worst else "",
            "severity": worst["severity"] if worst else "",
        }

    def clauses(self, changes: list[Mapping[str, Any]], instruction: str) -> list[ClauseView]:
        """How the judge reads `instruction`, clause by clause: each clause's span in the text, the changes
        it is matched to, and whether it is an unsupported assertion or a keep-clause (see the module doc).
        The simulated corrector edits instructions through these spans."""
        specs, clauses, spans = self._read(changes, instruction)
        redundant = {j for j, _ in _redundant_clauses(specs, clauses)}
        return [ClauseView(start, end, tuple(c.mentions), _unsupported(c) or bool(c.global_claim), c.keep,
                           j in redundant)
                for j, (c, (start, end)) in enumerate(zip(clauses, spans))]

    def _read(self, changes: list[Mapping[str, Any]], instruction: str):
        """(compiled changes, matched clauses, clause spans in `instruction`)."""
        if not isinstance(instruction, str) or not instruction.strip():
            raise ValueError("empty instruction")
        if not changes:
            raise ValueError("no changes: the rule judge needs a pair's structured changes")
        specs = []
        for i, c in enumerate(changes):
            if not isinstance(c, Mapping) or not all(isinstance(c.get(k), str) for k in _TEXT_FIELDS):
                raise ValueError(f"change {i}: expected string fields {list(_TEXT_FIELDS)} and primary, got {c!r}")
            specs.append(_compile(*(c[k] for k in _TEXT_FIELDS), bool(c.get("primary", True))))
        lowered = _APOSTROPHES.sub("'", instruction.lower())  # same length as the instruction: spans carry over
        spans, start = [], 0
        for separator in [*_CLAUSE_SPLIT.finditer(lowered), None]:
            end = separator.start() if separator else len(lowered)
            if lowered[start:end].strip():
                spans.append((start, end))
            start = separator.end() if separator else end
        clauses = [_Clause(_COUNTERCLOCKWISE.sub("counterclockwise", lowered[a:b])) for a, b in spans]
        self._match(specs, clauses)
        return specs, clauses, spans

    @staticmethod
    def _match(specs: list[_Spec], clauses: list[_Clause]) -> None:
        """Fill each clause's `mentions` (change indices) and `foreign` (words naming something else)."""
        change_words = frozenset().union(*(s.words for s in specs))
        ops = {s.op for s in specs}
        previous: list[int] = []
        for clause in clauses:
            if clause.keep:
                continue
            mentioned = []
            for i, s in enumerate(specs):
                if s.is_global:
                    if any(k in clause.padded for k in s.keywords):
                        mentioned.append(i)
                elif not s.heads.isdisjoint(clause.words):
                    mentioned.append(i)
            # two changed objects named by one noun ("red circle", "blue circle"): the colour decides
            objects = [i for i in mentioned if not specs[i].is_global]
            if len(objects) > 1:
                matched = {i: specs[i].heads & clause.words for i in objects}
                named = {i for i in objects if specs[i].qualifiers and specs[i].qualifiers <= clause.words}
                mentioned = [i for i in mentioned if specs[i].is_global or i in named or not any(
                    j in named and specs[j].name != specs[i].name and matched[i] & matched[j] for j in objects)]
            clause.foreign = [t for t in clause.tokens
                              if t not in change_words and _singular(t) not in change_words
                              and (t in OBJECTS or (t not in KNOWN_WORDS and _singular(t) not in KNOWN_WORDS
                                                    and not t.isdigit()))]
            # a whole-image edit (flip, rotate, zoom, tone, background, style) of an op no change has, naming
            # no object: it states a change the pair does not show, so it inherits no mention
            if not mentioned and not clause.foreign and clause.global_ops and clause.global_ops.isdisjoint(ops):
                clause.global_claim = clause.global_ops
                continue
            if not mentioned and (clause.pronoun or not clause.foreign):
                mentioned = list(previous)
            clause.mentions = mentioned
            if mentioned:
                previous = mentioned

    @staticmethod
    def _judge_change(index: int, spec: _Spec, clauses: list[_Clause], whole: str,
                      alone: bool, pair_ops: frozenset = frozenset()) -> tuple[float, int, list, int]:
        """(completeness credit, number of target parts written, errors, number of factual errors).

        `alone`: the change is the only one on its object, so naming the object in an edit clause of
        its own is half a hit even without the attribute word."""
        errors: list[dict] = []
        sev = _severity(spec)
        states = []
        for part in spec.parts:
            state, wrong = "absent", set()
            for clause in clauses:
                padded = clause.padded
                pos_ok = _last(padded, part.cues)
                pos_opp = _last(padded, part.opposite) if part.opposite else -1
                if pos_ok >= 0 and pos_ok >= pos_opp:
                    state = "stated"
                    break
                if pos_opp >= 0:
                    state = "reversed"
                elif part.wrong_class and state == "absent":
                    found = _candidates(clause, part.wrong_class, spec) - part.allowed
                    if found:
                        state, wrong = "wrong", found
            states.append((part, state, wrong))

        own_verb = any(v in c.padded for c in clauses for v in spec.verbs)
        said_add, said_remove = any(c.add for c in clauses), any(c.remove for c in clauses)
        op_reversed = (spec.op == "add" and said_remove and not said_add) or (
            spec.op == "remove" and said_add and not said_remove)
        # a viewpoint change put on one object ("flip the red circle") is an object edit, not the viewpoint
        as_object_edit = spec.viewpoint and clauses and all(
            any(t in SHAPES and t not in spec.words for t in c.tokens) and _WHOLE_IMAGE.isdisjoint(c.tokens)
            for c in clauses)
        reversed_parts = [p for p, s, _ in states if s == "reversed"]
        n_factual = 0

        if not clauses or as_object_edit:
            credit = 0.0
            if spec.viewpoint:
                how = "described as an edit of one object" if as_object_edit else "not described"
                errors.append(_error("viewpoint", "P0", index, f"viewpoint change {spec.label} {how}",
                                     "op" if as_object_edit else "omitted"))
            else:
                errors.append(_error("detail", sev, index, f"change {spec.label} not described", "omitted"))
        elif op_reversed or reversed_parts:
            credit = 0.0
            n_factual += 1
            if op_reversed:
                errors.append(_error("detail", sev, index, f"change {spec.label}: add and remove are reversed", "op"))
            for part in reversed_parts:
                etype = _direction_error_type(part.target)
                errors.append(_error(etype, "P0" if etype == "viewpoint" else sev, index,
                                     f"change {spec.label}: direction reversed ({_OPPOSITE.get(part.target)} "
                                     f"instead of {part.target})", "wrong"))
        else:
            named = any(s != "absent" for _, s, _ in states) or own_verb
            attr_named = any(_prefix_hit(c.tokens, spec.attr_prefixes) for c in clauses)
            own_clause = alone and any(len(c.mentions) == 1 and c.assertive for c in clauses)
            credit = 1.0 if named else (0.5 if attr_named or own_clause else 0.0)
            if credit == 0.0:
                errors.append(_error("viewpoint" if spec.viewpoint else "detail", sev, index,
                                     f"change {spec.label} named but not described", "omitted"))
            op_errors = []
            if spec.op not in ("add", "replace") and any(
                    c.add and len(c.mentions) == 1 and not any(v in c.padded for v in spec.verbs) for c in clauses):
                op_errors.append(f"change {spec.label} described as an addition")
            if spec.op not in ("remove", "replace", "text") and any(
                    c.remove and len(c.mentions) == 1 for c in clauses):
                op_errors.append(f"change {spec.label} described as a removal")
            if spec.op == "replace" and any(c.remove for c in clauses) and any(c.add for c in clauses) and not any(
                    c.replace for c in clauses):  # table 6 row 3: remove + add should be replace
                op_errors.append(f"change {spec.label} described as a removal and an addition, not a replacement")
            for c in clauses:  # an edit of another kind stated about this change's object ("and move it left")
                if len(c.mentions) != 1 or _keeps_value(spec, c):  # a no-op is redundant (P2), not an edit
                    continue
                other = sorted(op for op in _FOREIGN_OPS if op not in pair_ops and (spec.op, op) not in _SAME_EDIT
                               and any(v in c.padded for v in _OP_VERBS[op]))
                if other:
                    op_errors.append(f"change {spec.label}: also states a {other[0]} that the pair does not show")
                    break
            for reason in op_errors:
                n_factual += 1
                errors.append(_error("detail", sev, index, reason, "op"))
            for part, state, wrong in states:
                if state == "wrong":
                    n_factual += 1
                    etype = "orientation" if part.wrong_class == "spatial" else "detail"
                    errors.append(_error(etype, sev, index, f"change {spec.label}: says {', '.join(sorted(wrong))} "
                                                            f"instead of {part.target}", "wrong"))
                elif state == "absent" and credit > 0 and not op_errors:  # told as another edit: that is the error
                    errors.append(_error(_omission_type(spec, part), sev, index,
                                         f"change {spec.label}: {part.target} not stated", "omitted"))
            if spec.own_colour and spec.op not in ("add", "remove"):
                for c in clauses:
                    said = set().union(*(c.before_head.get(h, set()) for h in spec.heads))
                    if said and spec.own_colour not in said and not said <= spec.allowed_colours:
                        n_factual += 1
                        called = f"{', '.join(sorted(said))} {spec.name.split()[-1]}"
                        errors.append(_error("detail", sev, index, f"change {spec.label}: called the {called}", "wrong"))
                        break

        stated_parts = sum(1 for p, s, _ in states if s != "absent" or p.cues and _last(whole, p.cues) >= 0)
        return credit, stated_parts, errors, n_factual


# --------------------------------------------------------------------------------------------------
# Scoring a JSONL file of instructions (the `editcaption score --judge rule` command)

ON_ERROR = ("raise", "count")
PROBLEMS = ("bad_json", "missing_field", "empty_instruction", "unknown_id", "duplicate_id", "no_changes")


def _pair_changes(pairs: Any) -> dict[str, list]:
    """id -> changes of a pairs Dataset (images are not decoded) or of an iterable of row dicts."""
    if hasattr(pairs, "select_columns"):
        pairs = pairs.select_columns(["id", "changes"]).to_list()
    return {row["id"]: row["changes"] for row in pairs}


def score_file(pairs: Any, instructions_path: str | Path, out_path: str | Path, *, on_error: str = "raise",
               judge: RuleJudge | None = None) -> dict:
    """Score every `{"id", "instruction"}` line of a JSONL file against its pair's changes.

    Writes one JSON line per scored instruction (id + the judge's result) to `out_path` and returns a
    summary: n, the means of accuracy/completeness/clarity/composite, `error_counts` (type -> severity
    -> number of instructions whose worst error it is), `clean` (instructions without error), and
    `problems` (kind -> count) with `problem_lines` (line numbers). Bad input (a line that is not a
    JSON object, a missing or non-string id/instruction, an empty instruction, an id not in `pairs`, an
    id seen twice, a pair without changes) raises records.RecordError naming the file, line (as `row`)
    and field with on_error="raise" (the default); with on_error="count" it is counted and skipped.
    """
    if on_error not in ON_ERROR:
        raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
    path, out_path = Path(instructions_path), Path(out_path)
    if not path.is_file():
        raise records.RecordError("no such file", file=path)
    changes_by_id = _pair_changes(pairs)
    judge = judge or RuleJudge()
    problems = {kind: 0 for kind in PROBLEMS}
    problem_lines: dict[str, list[int]] = {kind: [] for kind in PROBLEMS}
    totals = {"accuracy": 0.0, "completeness": 0.0, "clarity": 0.0, "composite": 0.0}
    error_counts = {t: {s: 0 for s in _SEVERITY_RANK} for t in ERROR_TYPES}
    seen: set[str] = set()
    n = clean = 0

    def bad(kind: str, line_no: int, field: str | None, message: str) -> None:
        if on_error == "raise":
            raise records.RecordError(message, file=path, row=line_no, field=field)
        problems[kind] += 1
        problem_lines[kind].append(line_no)

    out_path.parent.mkdir(parents=True, exist_ok=True)
    with path.open(encoding="utf-8") as lines, out_path.open("w", encoding="utf-8") as out:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                bad("bad_json", line_no, None, f"not JSON ({exc.msg})")
                continue
            if not isinstance(item, dict):
                bad("bad_json", line_no, None, f"expected a JSON object, found {type(item).__name__}")
                continue
            missing = next((f for f in ("id", "instruction") if not isinstance(item.get(f), str)), None)
            if missing:
                bad("missing_field", line_no, missing, "missing field or not a string")
                continue
            pair_id, instruction = item["id"], item["instruction"]
            if not instruction.strip():
                bad("empty_instruction", line_no, "instruction", "empty instruction")
                continue
            if pair_id not in changes_by_id:
                bad("unknown_id", line_no, "id", f"no pair with id {pair_id!r}")
                continue
            if pair_id in seen:
                bad("duplicate_id", line_no, "id", f"id {pair_id!r} scored twice")
                continue
            if not changes_by_id[pair_id]:
                bad("no_changes", line_no, "id", f"pair {pair_id!r} has no structured changes to judge against")
                continue
            seen.add(pair_id)
            result = judge.score(changes_by_id[pair_id], instruction)
            out.write(json.dumps({"id": pair_id, **result}) + "\n")
            n += 1
            for key in totals:
                totals[key] += result[key]
            if result["error_type"]:
                error_counts[result["error_type"]][result["severity"]] += 1
            else:
                clean += 1
    return {
        "n": n,
        **{key: (round(total / n, 6) if n else math.nan) for key, total in totals.items()},
        "error_counts": error_counts,
        "clean": clean,
        "problems": problems,
        "problem_lines": {kind: lines for kind, lines in problem_lines.items() if lines},
        "out": str(out_path),
    }
