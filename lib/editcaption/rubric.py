"""The paper's scoring rules (appendix B listings 1-3, appendix A table 6) as data and pure functions.

Every judge (LLM or rule) ends in these functions, so the lookup tables, ceilings and weights live in
one place. Where the paper leaves a case open or its example tables disagree with its own listings,
the choice is documented here and listed in `PAPER_DISCREPANCIES` (listing B.2 calls its lookup table
strict, so the listings win).
"""
from __future__ import annotations

import math
import re
from typing import NamedTuple

from editcaption.vocab import BACKGROUNDS, COLORS, OBJECTS, OPPOSITE, SIGN_WORDS, STYLES, SYNONYMS, TEXTURES

# The error taxonomy (section 3.2, appendix A): the three failure modes and the three severities.
ERROR_TYPES = ("orientation", "viewpoint", "detail")
SEVERITIES = ("P0", "P1", "P2")

# Eq. 4 / appendix B: S = 0.4 Acc + 0.4 Comp + 0.2 Clar.
WEIGHTS = {"accuracy": 0.4, "completeness": 0.4, "clarity": 0.2}

# HAE-DPO (section 3.2): severity s_i (P0/P1/P2 -> 1 / 0.5 / 0) and failure-type weight c(t_i).
SEVERITY_WEIGHT = {"P0": 1.0, "P1": 0.5, "P2": 0.0}
TYPE_WEIGHT = {"orientation": 0.2, "viewpoint": 0.15, "detail": 0.1}


class ChecklistRow(NamedTuple):
    id: int
    severity: str
    category: str
    description: str


# Appendix A, table 6: the human annotation checklist (descriptions paraphrased).
CHECKLIST = (
    ChecklistRow(1, "P0", "text recognition / editing error (subject)",
                 "text on the edited subject contradicts the instruction: unchanged, wrongly changed, garbled"),
    ChecklistRow(1, "P1", "text recognition / editing error (background)",
                 "the same text error on a background element"),
    ChecklistRow(2, "P0", "instruction or attribute error (subject)",
                 "the primary edit or one of its attributes (colour, shape, material, style, quantity) is wrong, "
                 "or the affected region exceeds 1/10 of the image, or the value cannot be verified from the image"),
    ChecklistRow(2, "P1", "instruction or attribute error (non-subject)",
                 "the same error on a non-primary edit affecting under 1/10 of the image"),
    ChecklistRow(3, "P0", "instruction or content omission (subject)",
                 "the primary edit or a needed attribute is missing: an add/remove not mentioned, an added object "
                 "without colour or position, an ambiguous target, add+remove instead of replace, add instead of move"),
    ChecklistRow(3, "P1", "instruction or content omission (non-subject)",
                 "the same omission for a non-primary edit affecting under 1/10 of the image"),
    ChecklistRow(4, "P0", "viewpoint and spatial relation error",
                 "within one scene: wrong or missing shooting angle, orientation, distance or occlusion relation"),
    ChecklistRow(5, "P1", "global visual attribute error",
                 "a change of lighting, tone, brightness or saturation is wrong or not mentioned"),
    ChecklistRow(6, "P1", "information leakage",
                 "the instruction uses information only visible in the target image"),
    ChecklistRow(7, "P2", "redundant or verbose description",
                 "repetitive, contradictory or meaningless wording"),
    ChecklistRow(8, "P2", "other",
                 "any other minor issue, e.g. describing an edit between two identical images"),
)

# Words that state a target state (used for "vague verb without explicit target state").
EXTRA_COLORS = ("white", "gray", "silver", "gold", "golden", "beige", "navy", "mint", "teal", "magenta",
                "violet", "maroon", "olive", "lime", "turquoise", "lavender", "tan", "cream", "ivory", "indigo",
                "crimson", "scarlet", "khaki", "coral", "peach", "aqua", "bronze", "copper", "charcoal",
                "burgundy", "grey")
COLOR_WORDS = frozenset(COLORS) | frozenset(BACKGROUNDS) | frozenset(EXTRA_COLORS)
_DIRECTION_WORDS = {w for d in OPPOSITE for w in (d, *SYNONYMS.get(d, ())) if " " not in w} - {"in", "out"}
TARGET_STATE_WORDS = (COLOR_WORDS | frozenset(TEXTURES) | frozenset(STYLES) | frozenset(_DIRECTION_WORDS)
                      | frozenset(w.lower() for w in SIGN_WORDS)
                      | frozenset(("large", "small", "big", "tiny", "short", "long", "shorter", "longer", "thin",
                                   "thick", "thinner", "thicker", "stripes", "dots", "pixel")))

# Listing 3 forbidden terms (base forms; find_forbidden_terms also matches their inflections).
# "subjective" is not in listing 3: table 10 (score 1) names "look better" a blacklisted term.
FORBIDDEN_TERMS = {
    "vague_verbs": ("adjust", "process", "optimize", "modify"),
    "vague_degrees": ("appropriate", "slightly", "a bit", "somewhat"),
    "vague_references": ("that", "this", "it", "refer to original image"),
    "subjective": ("look better", "more beautiful", "more attractive", "more appealing", "nicer", "prettier"),
}

_VAGUE_VERB = re.compile(r"\b(?:adjust(?:s|ed|ing|ments?)?|process(?:es|ed|ing)?|optimi[sz](?:e|es|ed|ing|ation)"
                         r"|modif(?:y|ies|ied|ying|ication))\b")
_VAGUE_DEGREE = re.compile(r"\b(?:appropriate(?:ly)?|slightly|a bit|somewhat)\b")
_SUBJECTIVE = re.compile(r"\b(?:looks? better|more (?:beautiful|attractive|appealing)|nicer|prettier)\b")
_ORIGINAL_REF = re.compile(r"\b(?:refer(?:ring)? to|as in|like|same as|matching)\s+(?:the\s+)?"
                           r"(?:original|source|reference|first)(?:\s+(?:image|picture|photo))?\b")
_CLAUSE_END = re.compile(r"[;,.!?\n]+|\band\b|\bthen\b")
_WORD_OR_STOP = re.compile(r"[a-z0-9]+|[.;,!?:\n]")
_QUOTED = re.compile(r"[\"'“”‘’][^\"'“”‘’]+[\"'“”‘’]")
_DIGIT = re.compile(r"\d")
_WORD = re.compile(r"[a-z0-9]+")
_PUNCT = frozenset(".;,!?:\n")
# "this"/"that" is a vague reference when it follows a verb or preposition (or opens a clause) ...
_REF_TRIGGERS = frozenset(
    "change make move remove delete add replace turn set rotate flip color colour paint edit modify adjust shift "
    "put place keep swap resize enlarge shrink zoom erase recolor use copy of to on in at with like from into onto "
    "for near beside behind above below under over toward towards by and".split())
# ... and is not followed by a word that marks a conjunction or relative clause ("so that the", "that is").
_CONJ_FOLLOWERS = frozenset(
    "the a an it its is was are were be been has have had will would can could should may might must does do did "
    "they there we you i he she this that these those all each every no not".split())
_DETERMINERS = frozenset("the a an this that these those each every their".split())
_NOT_NOUNS = frozenset(("bit", "little", "lot", "few"))  # "a bit": not something "it" can refer to
_NOUNS = frozenset(("image", "picture", "photo", "scene", "background", "canvas", "frame", "object", "shape",
                    "person", "camera")) | frozenset(OBJECTS)


def composite(acc: float, comp: float, clar: float) -> float:
    """Eq. 4: 0.4 accuracy + 0.4 completeness + 0.2 clarity (each on the 0-5 scale)."""
    for name, value in (("accuracy", acc), ("completeness", comp), ("clarity", clar)):
        if not 0.0 <= value <= 5.0:
            raise ValueError(f"{name} score {value!r} outside [0, 5]")
    return round(WEIGHTS["accuracy"] * acc + WEIGHTS["completeness"] * comp + WEIGHTS["clarity"] * clar, 6)


def _check_fraction(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or math.isnan(value) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{name} must be a fraction in [0, 1], got {value!r}")
    return float(value)


_EPS = 1e-9  # 2/3 and friends: compare thresholds with a tolerance for float rounding


def _tier(value: float, tiers: tuple[tuple[float, float], ...], floor: float) -> float:
    """The score of the first (threshold, score) tier that `value` reaches (>= threshold), else `floor`."""
    for threshold, score in tiers:
        if value >= threshold - _EPS:
            return score
    return floor


# (threshold, score), highest first; 0 < R < 20 % -> 2.0 (see completeness_from_coverage).
_COVERAGE_TIERS = ((1.0, 5.0), (0.75, 4.5), (0.6, 4.0), (0.5, 3.0), (2 * _EPS, 2.0))
_ATTRIBUTE_TIERS = ((1.0, 5.0), (0.6, 4.0), (0.3, 3.0), (2 * _EPS, 2.0))


def completeness_from_coverage(coverage: float, covers_secondary: bool) -> float:
    """Listing B.2's strict lookup of primary-change coverage R (a fraction), plus the +0.5 secondary bonus.

    R = 1 -> 5.0; 0.75 <= R < 1 -> 4.5; 0.6 <= R < 0.75 -> 4.0; 0.5 <= R < 0.6 -> 3.0; 0.2 <= R < 0.5 -> 2.0;
    R = 0 -> 1.0. The listing leaves 0 < R < 0.2 open; we give it 2.0, as table 9 scores 0.5/3 = 16.7 %
    with 2 (any coverage at all beats none). The bonus (+0.5, capped at 5.0) applies only when R < 1 and
    at least one secondary change is covered; no other adjustment, up or down.
    """
    base = _tier(_check_fraction("coverage", coverage), _COVERAGE_TIERS, floor=1.0)
    return min(5.0, base + 0.5) if covers_secondary and base < 5.0 else base


def clarity_ceiling(n_forbidden_terms: int) -> float:
    """Listing 3: the highest clarity allowed with n forbidden terms (0 -> 5.0, 1 -> 3.0, 2 -> 2.5, 3+ -> 2.0)."""
    if isinstance(n_forbidden_terms, bool) or not isinstance(n_forbidden_terms, int) or n_forbidden_terms < 0:
        raise ValueError(f"n_forbidden_terms must be a non-negative int, got {n_forbidden_terms!r}")
    return (5.0, 3.0, 2.5)[n_forbidden_terms] if n_forbidden_terms < 3 else 2.0


def _states_target(clause: str) -> bool:
    """A clause states an explicit target state: a colour, size, direction, texture, style, number or quote."""
    if _DIGIT.search(clause) or _QUOTED.search(clause):
        return True
    return any(w in TARGET_STATE_WORDS for w in _WORD.findall(clause))


def _vague_references(text: str) -> list[tuple[int, str]]:
    """("it"/"this"/"that" used as a vague reference, position) pairs; see find_forbidden_terms."""
    found = []
    tokens = [(m.group(), m.start()) for m in _WORD_OR_STOP.finditer(text)]
    antecedent = False  # a noun the pronoun "it" can point back to has appeared
    for i, (tok, pos) in enumerate(tokens):
        prev = tokens[i - 1][0] if i else None
        nxt = tokens[i + 1][0] if i + 1 < len(tokens) else None
        if tok in ("it", "its"):
            if not antecedent:
                found.append((pos, tok))
        elif tok in ("this", "that"):
            opens = prev is None or prev in _PUNCT
            if (opens or prev in _REF_TRIGGERS) and nxt not in _CONJ_FOLLOWERS:
                found.append((pos, tok))
        if tok in _NOUNS or (prev in _DETERMINERS and tok not in _PUNCT and tok not in _NOT_NOUNS):
            antecedent = True
    return found


def find_forbidden_terms(text: str) -> list[str]:
    """Listing 3's forbidden terms found in `text` (lower-cased, in order, one entry per occurrence).

    Matching is case-insensitive on whole words. The rules we chose for the context-dependent terms:
    - vague verbs (adjust/process/optimize/modify, any inflection) count only when their clause (split on
      ; , . ! ? newlines, "and", "then") states no explicit target state: a colour, size, direction, texture, style,
      number or quoted text ("modify the circle to red" is fine; "optimize the image" is not);
    - "this"/"that" count when used as a demonstrative ("that piece", "remove this"): after a verb or
      preposition or at the start of a clause, and not followed by a word that marks a conjunction or
      relative clause ("so that the ...", "the circle that is ...", "note that it ..." do not count);
    - "it"/"its" count only when nothing it could refer to came before ("Make it red" counts, "Change
      the dress to pink and shorten it" does not);
    - "refer to original image" covers "as in / like / same as / refer to the original (image)";
    - "subjective" phrases ("look better", ...) come from table 10, not listing 3.
    """
    text = text.lower()
    found: list[tuple[int, str]] = []
    start = 0
    for end in [*_CLAUSE_END.finditer(text), None]:
        clause = text[start:end.start() if end else len(text)]
        if not _states_target(clause):
            found += [(start + m.start(), m.group()) for m in _VAGUE_VERB.finditer(clause)]
        start = end.end() if end else start
    for pattern in (_VAGUE_DEGREE, _SUBJECTIVE, _ORIGINAL_REF):
        found += [(m.start(), m.group()) for m in pattern.finditer(text)]
    found += _vague_references(text)
    return [term for _, term in sorted(found)]


def accuracy_score(n_errors_core: int, n_errors_noncore: int, hallucinated: bool, coverage: float,
                   wrong_object: bool) -> int:
    """Listing B.1 / table 8 tiers, read top-down (the first that applies wins):

    1  wrong_object: the instruction is about an object no change touches (table 8: "change car to red");
    2  >= 2 major (core) errors, or any hallucinated content (fabricated object or add/remove; caps at 2);
    3  exactly 1 major error, or primary coverage < 30 %;
    4  coverage < 50 % (the tier's "coverage >= 30 %");
    5  all stated facts correct and coverage >= 50 %.
    Minor (non-core) errors, i.e. wrong statements about unchanged elements or secondary changes, cost 1
    point each from 5 ("non-core error: -1"), never below 2; so one minor flaw gives 4, as in table 8.
    """
    for name, value in (("n_errors_core", n_errors_core), ("n_errors_noncore", n_errors_noncore)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    r = _check_fraction("coverage", coverage)
    if wrong_object:
        return 1
    if hallucinated or n_errors_core >= 2:
        tier = 2
    elif n_errors_core == 1 or r < 0.3 - _EPS:
        tier = 3
    elif r < 0.5 - _EPS:
        tier = 4
    else:
        tier = 5
    return min(tier, max(2, 5 - n_errors_noncore))


def clarity_score(n_forbidden: int, attribute_completeness: float, n_words: int = 0, n_info_points: int = 0) -> float:
    """Listing 3 steps 4-5: min(forbidden-term ceiling, attribute-completeness level) - density deduction.

    Attribute completeness a is the mean over changes of how much of each change's target state is
    stated (1 all, 0.5 the change is named without its target, 0 not at all). Levels follow table 10:
    a = 1 -> 5 (every change fully specified); a >= 0.6 -> 4 (core attributes present, a secondary one
    missing); a >= 0.3 -> 3 (object and operation clear, key attributes missing); a > 0 -> 2; a = 0 -> 1
    (nothing executable). Information density: more than 150 words carrying fewer than 5 information
    points costs 1.0 (the 10 % criterion). The result never goes below 1.0.
    """
    level = _tier(_check_fraction("attribute_completeness", attribute_completeness), _ATTRIBUTE_TIERS, floor=1.0)
    score = min(clarity_ceiling(n_forbidden), level)
    if n_words > 150 and n_info_points < 5:
        score -= 1.0
    return max(1.0, score)


class Discrepancy(NamedTuple):
    table: int
    row: int  # 1-based, top to bottom
    instruction: str
    dimension: str
    paper: float
    ours: float
    why: str


# Rows of the paper's example tables whose printed score contradicts its own listings; we follow the
# listings (tests check that every other row is reproduced exactly).
PAPER_DISCREPANCIES = (
    Discrepancy(9, 3, "Change the dress to pink.", "completeness", 3, 2.0,
                "coverage 1/3 = 33 % falls in listing B.2's 20 % <= R < 50 % band, which scores 2.0"),
    Discrepancy(9, 5, "Replace the necklace with a silver one.", "completeness", 1, 1.5,
                "R = 0 gives 1.0, and listing B.2's +0.5 bonus applies because the secondary necklace change "
                "is covered"),
)
