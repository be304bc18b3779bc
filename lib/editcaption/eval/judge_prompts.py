"""The LLM judge's three prompts (appendix B listings B.1-B.3), written by us, built from `rubric`.

Each dimension is judged in its own call: the source image (Image A) and the edited image (Image B)
come first, then one of these prompts with the ground truth and the instruction. The numbers in the
prompts (lookup table, ceilings, forbidden terms, score ranges) are rendered from `rubric`, so
the LLM judge and the rule judge follow the same rules. Departures from the listings, on purpose:
- the evaluated model's name is not shown to the judge (blind judging; the cache key has no model);
- the open band 0 < R < 20 % of listing B.2 scores 2.0, as `rubric.completeness_from_coverage` does;
- a change named without what changes counts as half a hit (table 9), as in the rule judge.
`PROMPT_VERSION[dimension]` names the exact wording (a hash of the template): any change of a prompt
is a new version, so cached replies to an old wording are never reused.
"""
from __future__ import annotations

import hashlib
import re
from typing import Mapping

from editcaption import rubric

DIMENSIONS = ("accuracy", "completeness", "clarity")

# The literals of rubric.accuracy_score and rubric.clarity_score (tests check that these agree with them).
ACCURACY_COVERAGE = (0.3, 0.5)  # coverage below the first caps accuracy at 3, below the second at 4
DENSITY_WORDS, DENSITY_POINTS, DENSITY_DEDUCTION = 150, 5, 1.0  # > 150 words with < 5 information points: -1.0

# Every score a judge may give, as rubric's functions compute them.
SCORE_RANGE = {
    "accuracy": (rubric.accuracy_score(0, 0, False, 0.0, True), rubric.accuracy_score(0, 0, False, 1.0, False)),
    "completeness": (rubric.completeness_from_coverage(0.0, False), rubric.completeness_from_coverage(1.0, False)),
    "clarity": (rubric.clarity_score(3, 0.0), rubric.clarity_score(0, 1.0)),
}
COMPLETENESS_VALUES = tuple(sorted({rubric.completeness_from_coverage(r / 100, bonus)
                                    for r in range(101) for bonus in (False, True)}))
INTEGER_SCORES = frozenset({"accuracy"})  # listing B.1 asks for an integer score


def _percent(fraction: float) -> str:
    return f"{fraction * 100:g}%"


def _number(value: float) -> str:
    return f"{value:.1f}"


def completeness_table() -> list[str]:
    """Listing B.2's lookup table, one band per line, rendered from rubric's coverage tiers."""
    lines, upper = [], None
    for threshold, score in rubric._COVERAGE_TIERS:
        if upper is None:
            band = f"R = {_percent(threshold)}"
        elif threshold < 0.01:
            band = f"0% < R < {_percent(upper)}"
        else:
            band = f"{_percent(threshold)} <= R < {_percent(upper)}"
        lines.append(f"  {band} -> {_number(score)}")
        upper = threshold
    lines.append(f"  R = 0% -> {_number(rubric.completeness_from_coverage(0.0, False))}")
    return lines


def attribute_levels() -> list[str]:
    """Table 10's attribute-completeness levels (a = share of each change's target state stated)."""
    meaning = {5.0: "every changed object fully specified (colour, material, shape, size, position, exact length)",
               4.0: "core attributes present, one or two secondary attributes missing",
               3.0: "object and operation identifiable, key target attributes missing",
               2.0: "barely any target attribute stated"}
    lines, first = [], True
    for threshold, level in rubric._ATTRIBUTE_TIERS:
        band = "a = 100%" if first else (f"a >= {_percent(threshold)}" if threshold > 0.01 else "a > 0%")
        lines.append(f"  {band} -> {_number(level)}: {meaning[level]}")
        first = False
    lines.append(f"  a = 0% -> {_number(rubric.clarity_score(0, 0.0))}: nothing executable")
    return lines


def forbidden_terms() -> list[str]:
    """Listing B.3's forbidden terms (plus table 10's subjective phrases), from rubric.FORBIDDEN_TERMS."""
    labels = {"vague_verbs": "Vague verbs (only when the clause states no explicit target state)",
              "vague_degrees": "Vague degrees", "vague_references": "Vague references",
              "subjective": "Subjective wording (table 10)"}
    return [f"  {labels[kind]}: {' / '.join(terms)}" for kind, terms in rubric.FORBIDDEN_TERMS.items()]


def ceilings() -> str:
    return " | ".join(f"{n}{'+' if n == 3 else ''} term{'s' * (n > 1)} -> max {_number(rubric.clarity_ceiling(n))}"
                      for n in (1, 2, 3))


def _reply_format(dimension: str) -> str:
    low, high = SCORE_RANGE[dimension]
    if dimension in INTEGER_SCORES:
        kind = f"an integer from {low:g} to {high:g}"
    elif dimension == "completeness":
        kind = "one of " + ", ".join(_number(v) for v in COMPLETENESS_VALUES)
    else:
        kind = f"a number from {_number(low)} to {_number(high)}, in steps of 0.5"
    return (f"Write each step, then end your answer with exactly one line of JSON and nothing after it "
            f"(no markdown fences):\n"
            f'{{"dimension": "{dimension}", "score": <{kind}>, "reasoning": "<one or two sentences>"}}')


_INTRO = ("You are a strict judge of image-editing instructions. Image A (the first image) is the source image, "
          "Image B (the second image) is the edited result. An instruction is meant to turn Image A into Image B. "
          "You also get the annotated ground truth of the edit.")

_ACCURACY = f"""{_INTRO}

You judge ONLY the Accuracy dimension: is every statement of the instruction true of the edit from Image A to Image B?
- A factual error costs points even when the instruction is complete and clear.
- An incomplete or vague instruction whose statements are all true can still score high.
- Completeness and clarity must not influence this score.
Principle: lie detector plus a minimum coverage. Leaving out a degree (ground truth "deep red", instruction "red") is a
clarity matter, not an error. Leaving out a change is not an error, but too little coverage of the major (primary)
changes caps the score.

Rubric (take the first row that applies, top to bottom):
  1: the instruction is about an object that is not in the images (wrong object, unrelated to the edit).
  2: two or more major errors (wrong object, operation or attribute of a primary change, or a reversed direction), or
     any hallucination (an object or an add/remove/replace the edit does not contain). A hallucination caps at 2.
  3: exactly one major error, or coverage of the major changes below {_percent(ACCURACY_COVERAGE[0])}.
  4: no major error, coverage at least {_percent(ACCURACY_COVERAGE[0])} but below {_percent(ACCURACY_COVERAGE[1])}.
  5: every statement correct and coverage at least {_percent(ACCURACY_COVERAGE[1])}.
Minor errors (a wrong statement about an unchanged element or about a secondary change) cost 1 point each from the
row's score, never going below 2.

[Ground Truth]
{{gt_text}}

[Instruction to Evaluate]
{{instruction}}

Steps:
Step 1: Count the major (primary) changes of the ground truth: N.
Step 2: List every assertion of the instruction.
Step 3: Hallucination check: any hallucinated object or operation caps the score at 2.
Step 4: Check each assertion against the images and the ground truth (object, operation, attribute, direction).
Step 5: Coverage = M / N, where M is the number of major changes the instruction states.
Step 6: Take the score from the rubric (errors first, then coverage).
Step 7: {_reply_format("accuracy")}"""

_COMPLETENESS_TABLE = "\n".join(completeness_table())

_COMPLETENESS = f"""{_INTRO}

You judge ONLY the Completeness dimension: the recall of the instruction against the ground truth.
Principles:
1. Count only: decide whether each ground-truth change is triggered by the instruction; whether the instruction
   gets it right does not matter here.
2. No double penalty: the coverage alone sets the score; nothing is deducted after the lookup.
Hit / miss:
  HIT (1): the instruction names the changed object and the kind of action (a wrong attribute is still a hit; a vague
    wording is still a hit).
  HALF HIT (0.5): the instruction names the changed object or attribute but not what changes ("change the dress style").
  MISS (0): the change is not mentioned, or its direction is reversed (ground truth adds, instruction removes).
Coverage R = K / N x 100%, K = hits over the major (primary) changes, N = number of major changes. When the ground truth
lists no primary change, its secondary changes are the major ones.
Lookup table (strict, no other adjustment):
{_COMPLETENESS_TABLE}
Bonus, the only upward adjustment: when R < 100% and the instruction also covers at least one secondary (minor) change,
add 0.5 (at most {_number(SCORE_RANGE["completeness"][1])}). Downward adjustments are forbidden.

[Ground Truth]
{{gt_text}}

[Instruction to Evaluate]
{{instruction}}

Steps:
Step 1: List every major change of the ground truth and mark it HIT, HALF HIT or MISS.
Step 2: Compute R = K / N.
Step 3: Look up the base score in the table.
Step 4: Apply the secondary-change bonus if it applies.
Step 5: {_reply_format("completeness")}
Begin the reasoning with "N changes, K hits (R=X%)"."""

_FORBIDDEN = "\n".join(forbidden_terms())
_LEVELS = "\n".join(attribute_levels())

_CLARITY = f"""{_INTRO}

You judge ONLY the Clarity dimension: could a blind robot, reading only the instruction and seeing only Image A,
carry out the edit precisely?
- Vague wording costs points even when the instruction is complete and accurate.
- A clear instruction can score high even when it is wrong or incomplete.
- Completeness and accuracy must not influence this score.
Criteria by weight:
1. Unambiguity (50%): no forbidden term; the operation and the target state are defined.
2. Attribute completeness (40%): colour, material, shape, size and position of every changed object are stated.
3. Information density (10%): concise beats verbose; more than {DENSITY_WORDS} words carrying fewer than
   {DENSITY_POINTS} information points costs {_number(DENSITY_DEDUCTION)}.
Forbidden terms (count each occurrence):
{_FORBIDDEN}
  "this" / "that" count when they point at something unnamed ("that piece", "remove this"), not as conjunctions
  ("so that the ..."); "it" counts when nothing named comes before it; "refer to original image" also covers
  "as in / like / same as the original".
Forbidden-term ceiling: {ceilings()}.
Attribute-completeness levels (a = share of each change's target state the instruction states, averaged over changes):
{_LEVELS}
Score = the lower of the ceiling and the level, minus the density deduction, never below
{_number(SCORE_RANGE["clarity"][0])}.

[Ground Truth (for the attribute check only)]
{{gt_text}}

[Instruction to Evaluate]
{{instruction}}

Steps:
Step 1: List every forbidden term found.
Step 2: Check the attribute completeness object by object.
Step 3: Check the level of detail (location, angle, secondary attributes).
Step 4: Set the ceiling from the number of forbidden terms.
Step 5: Set the score from the ceiling, the attribute level and the density rule.
Step 6: {_reply_format("clarity")}"""

TEMPLATES = {"accuracy": _ACCURACY, "completeness": _COMPLETENESS, "clarity": _CLARITY}
PROMPT_VERSION = {d: f"{d}-v1-{hashlib.sha256(t.encode('utf-8')).hexdigest()[:10]}" for d, t in TEMPLATES.items()}

_FIELD = re.compile(r"\{(gt_text|instruction)\}")


def gt_text(gt: Mapping) -> str:
    """The ground truth as the judge reads it (table 7's layout): numbered primary and secondary changes, overall."""
    def numbered(changes) -> str:
        changes = [str(c).strip() for c in changes or () if str(c).strip()]
        return "\n".join(f"{i}. {c}" for i, c in enumerate(changes, 1)) or "(none)"

    overall = str(gt.get("overall") or "").strip() or "(none)"
    return (f"[Primary Changes]\n{numbered(gt.get('primary_changes'))}\n"
            f"[Secondary Changes]\n{numbered(gt.get('secondary_changes'))}\n"
            f"[Overall Description]\n{overall}")


def build_prompt(dimension: str, gt: Mapping, instruction: str) -> str:
    """The full text prompt for one dimension (the two images are sent before it)."""
    if dimension not in TEMPLATES:
        raise ValueError(f"unknown dimension {dimension!r}; expected one of {DIMENSIONS}")
    values = {"gt_text": gt_text(gt), "instruction": instruction.strip()}
    return _FIELD.sub(lambda m: values[m.group(1)], TEMPLATES[dimension])
