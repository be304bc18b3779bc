"""The shape of chosen and rejected answers, and a preference set that does not teach it.

DPO learns whatever separates chosen from rejected answers, including what the correction did not mean to
teach. If corrections only ever add a clause (an omission fixed by appending one), the set teaches "write
more"; if the corrector joins clauses in a form no SFT target has, it teaches that form. This module measures
both and builds a set without a systematic sign:

- `joining_forms` / `form_shares`: how clauses are joined (", and also", ". Also,", ", then", ", and", " and
  ", ...), as the share of texts using each form, so chosen answers can be held to the SFT targets' forms;
- `edit_clauses` / `shape_deltas`: per preference pair, chosen − rejected in words and in imperative edit
  clauses (a clause that starts with an edit verb);
- `balance_lengths`: per failure mode, the pairs whose chosen answer has more clauses are cut to as many as
  those with fewer (and likewise for words among the rest), by a seeded draw; pairs with equal length all stay.
"""
from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import pandas as pd

from editcaption.data import correction
from editcaption.world.texts import TEXTS

# How two clauses are joined, each as a pattern on the lower-cased text (checked in this order; a text can use
# several). ", and " is the corrector's old append form; the SFT targets join with " and ", ", then ", ", and
# also ", ". Also, " and ". Additionally, " (world.texts.render_reference_instruction).
JOINING_FORMS = {
    ", and also": re.compile(r",\s+and\s+also\b"),
    ". also,": re.compile(r"[.!?]\s+also\s*,"),
    ". additionally,": re.compile(r"[.!?]\s+additionally\s*,"),
    ", then": re.compile(r",\s+then\b"),
    ", and": re.compile(r",\s+and\b(?!\s+also\b)"),
    " and (no comma)": re.compile(r"(?<![,\s])\s+and\b(?!\s+also\b)"),
    "sentence": re.compile(r"[.!?]\s+(?!also\b|additionally\b)[a-z]"),
}
# The verbs that open an imperative edit clause: the first word of every wording in the world's texts, and the
# common ones a model may use besides.
EDIT_VERBS = frozenset({template.split()[0] for wordings, _ in TEXTS.values() for template in wordings} | {
    "move", "shift", "slide", "flip", "mirror", "rotate", "turn", "zoom", "resize", "recolor", "recolour", "paint",
    "change", "make", "add", "remove", "delete", "erase", "replace", "swap", "convert", "give", "render", "draw",
    "place", "put", "apply", "redraw", "insert", "enlarge", "shrink", "darken", "brighten", "lighten"})
_CONNECTIVES = frozenset(("and", "also", "then", "additionally", "finally", "next", "please"))
_SPLIT = re.compile(r"[.;!?,:]+|\band\b|\bthen\b", flags=re.IGNORECASE)


def words(text: str) -> int:
    """Words in a text (the corrector's tokens, `correction.words`)."""
    return len(correction.words(text))


def edit_clauses(text: str) -> int:
    """Imperative edit clauses in a text: pieces between separators whose first word (after "and", "also",
    "then" ...) is an edit verb ("Move the star left, then flip the image" -> 2; "keeping the rest" -> 0)."""
    count = 0
    for piece in _SPLIT.split(text):
        tokens = correction.words(piece)
        tokens = [t for t in tokens if t not in _CONNECTIVES][:1]
        count += bool(tokens) and tokens[0] in EDIT_VERBS
    return count


def joining_forms(text: str) -> set[str]:
    """The JOINING_FORMS a text uses."""
    lowered = " ".join(text.lower().split())
    return {name for name, pattern in JOINING_FORMS.items() if pattern.search(lowered)}


def form_shares(groups: Mapping[str, Iterable[str]]) -> pd.DataFrame:
    """Share of texts using each joining form (rows), per group of texts (columns, e.g. SFT targets, chosen,
    rejected); a last row counts the texts."""
    table = {}
    for name, texts in groups.items():
        texts = list(texts)
        used = [joining_forms(t) for t in texts]
        table[name] = {form: (sum(form in u for u in used) / len(texts) if texts else float("nan"))
                       for form in JOINING_FORMS}
        table[name]["texts"] = len(texts)
    return pd.DataFrame(table)


def foreign_forms(shares: pd.DataFrame, group: str, reference: str, *, at_most: float = 0.05,
                  reference_below: float = 0.01) -> list[str]:
    """Forms `group` uses in more than `at_most` of its texts while `reference` uses them in fewer than
    `reference_below` of its own: a form the chosen answers teach that the SFT targets lack."""
    body = shares.drop(index="texts")
    return [form for form in body.index if body.at[form, group] > at_most and body.at[form, reference] < reference_below]


def shape_deltas(rows: Sequence[Mapping[str, str]]) -> pd.DataFrame:
    """Per pair ({id, error_type, chosen, rejected}): chosen − rejected in words and in edit clauses."""
    out = [{"id": r["id"], "error_type": r["error_type"],
            "d_words": words(r["chosen"]) - words(r["rejected"]),
            "d_clauses": edit_clauses(r["chosen"]) - edit_clauses(r["rejected"])} for r in rows]
    return pd.DataFrame(out, columns=["id", "error_type", "d_words", "d_clauses"])


def sign_table(deltas: pd.DataFrame) -> pd.DataFrame:
    """Per failure mode (and all): pairs, and how many chosen answers are longer / equal / shorter than their
    rejected answer, in clauses and in words, with the mean difference."""
    def row(frame: pd.DataFrame) -> dict:
        out = {"pairs": len(frame)}
        for col, tag in (("d_clauses", "clauses"), ("d_words", "words")):
            out[f"{tag} +"] = int((frame[col] > 0).sum())
            out[f"{tag} ="] = int((frame[col] == 0).sum())
            out[f"{tag} -"] = int((frame[col] < 0).sum())
            out[f"{tag} mean"] = round(float(frame[col].mean()), 3) if len(frame) else float("nan")
        return out

    table = {mode: row(group) for mode, group in deltas.groupby("error_type")}
    table["all"] = row(deltas)
    return pd.DataFrame(table).T


@dataclass
class LengthBalance:
    """The ids kept so that chosen − rejected has no systematic sign, per mode, and the deltas before and after."""

    kept: list[str]
    dropped: list[str]
    before: pd.DataFrame  # sign_table of every pair
    after: pd.DataFrame  # sign_table of the kept pairs

    def summary(self) -> dict:
        return {"n_before": len(self.kept) + len(self.dropped), "n_kept": len(self.kept), "n_dropped": len(self.dropped),
                "before": self.before.to_dict(orient="index"), "after": self.after.to_dict(orient="index")}


def _cut(ids: list[str], n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """A seeded draw of n of `ids` (kept, dropped)."""
    order = sorted(ids)
    rng.shuffle(order)
    return order[:n], order[n:]


def balance_lengths(deltas: pd.DataFrame, *, seed: int = 0, enabled: bool = True) -> LengthBalance:
    """Per failure mode: of the pairs whose chosen answer has more edit clauses than the rejected one and those
    with fewer, the larger group is cut to the size of the smaller; then, among the pairs left with as many
    clauses, the same for words. Equal pairs all stay. The draw is seeded. `enabled` False keeps every pair
    (the tables still show the deltas)."""
    if not enabled:
        return LengthBalance(deltas["id"].tolist(), [], sign_table(deltas), sign_table(deltas))
    rng = random.Random(f"length-balance-{seed}")
    kept: list[str] = []
    for _, group in sorted(deltas.groupby("error_type"), key=lambda item: item[0]):
        more = group.loc[group["d_clauses"] > 0, "id"].tolist()
        fewer = group.loc[group["d_clauses"] < 0, "id"].tolist()
        n = min(len(more), len(fewer))
        kept += _cut(more, n, rng)[0] + _cut(fewer, n, rng)[0]
        same = group[group["d_clauses"] == 0]
        longer = same.loc[same["d_words"] > 0, "id"].tolist()
        shorter = same.loc[same["d_words"] < 0, "id"].tolist()
        n = min(len(longer), len(shorter))
        kept += _cut(longer, n, rng)[0] + _cut(shorter, n, rng)[0] + same.loc[same["d_words"] == 0, "id"].tolist()
    kept_set = set(kept)
    ordered = [pid for pid in deltas["id"] if pid in kept_set]
    dropped = [pid for pid in deltas["id"] if pid not in kept_set]
    return LengthBalance(ordered, dropped, sign_table(deltas), sign_table(deltas[deltas["id"].isin(kept_set)]))
