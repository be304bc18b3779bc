"""The texts of a synthetic pair, written from its recorded changes alone: the wordings of each change's
imperative clause (one table, `TEXTS`, per op: the clause's wordings and the ground-truth sentence), the
reference instruction built from them, and the `gt` struct."""
from __future__ import annotations

import random



from editcaption.world.scenes import VIEW_OPS

# ----------------------------------------------------------------------------------------------
# Texts: the reference instruction and the gt struct, written from the changes alone

_MOVE_WORDS = {"left": "to the left", "right": "to the right", "up": "up", "down": "down"}
_PLACE_WORDS = {"left": "on the left side", "right": "on the right side", "up": "at the top", "down": "at the bottom"}
_STYLE_WORDS = {"inverted": "inverted-color"}


def _a(word: str) -> str:
    return f"an {word}" if word[:1].lower() in "aeiou" else f"a {word}"


def _named(color: str, obj: str) -> str:
    """`obj` with its colour in front unless the name already holds the colour."""
    return obj if not color or color in obj.split() else f"{color} {obj}"


def _words(change: dict) -> dict[str, str]:
    """The pieces the texts of a change are made of, by name (the `{...}` fields of TEXTS)."""
    obj, before, after, direction = change["object"], change["before"], change["after"], change["direction"]
    return {"obj": obj, "attr": change["attribute"], "before": before, "after": after, "direction": direction,
            "new_thing": _a(_named(after, obj)), "old_thing": _named(before, obj), "an_after": _a(after),
            "where": f" {_PLACE_WORDS[direction]}" if direction in _PLACE_WORDS else "",
            "way": _MOVE_WORDS.get(direction, direction), "turn": after if after.isdigit() else "90",
            "shade": after or direction, "new_look": _a(_STYLE_WORDS.get(after, after)),
            "old_look": _a(_STYLE_WORDS.get(before, before)), "before_or_unset": before or "unspecified",
            "after_or_none": after or "none"}


# One row per kind of change: the wordings of its imperative clause (lower-case, no final stop; the reference
# instruction draws one, the simulated corrector takes the one closest to a model's text) and its sentence in
# the `gt` struct. Zoom has a row per direction; a change of an op not listed takes "other".
TEXTS: dict[str, tuple[tuple[str, ...], str]] = {
    "add": (("add {new_thing}{where}", "place {new_thing}{where}", "draw {new_thing}{where}", "put {new_thing}{where}"),
            "{new_thing} is added{where}"),
    "remove": (("remove the {old_thing}", "delete the {old_thing}", "erase the {old_thing}"),
               "the {old_thing} is removed"),
    "replace": (("replace the {before} with {an_after}", "swap the {before} for {an_after}",
                 "turn the {before} into {an_after}"),
                "the {before} is replaced by {an_after}"),
    "background": (("change the background from {before} to {after}", "make the background {after} instead of {before}",
                    "recolor the background {after}"),
                   "the background color changes from {before} to {after}"),
    "color": (("change the {old_thing} to {after}", "recolor the {old_thing} {after}", "make the {old_thing} {after}",
               "paint the {old_thing} {after}", "change the color of the {old_thing} from {before} to {after}"),
              "the {old_thing} changes color from {before} to {after}"),
    "style": (("convert the whole image to {new_look} style", "give the whole image {new_look} style",
               "redraw the whole image with {new_look} style"),
              "the whole image changes from {old_look} style to {new_look} style"),
    "tone": (("make the whole image {shade}", "render the whole image {shade}", "make the entire image {shade}"),
             "the whole image becomes {shade}"),
    "material": (("give the {obj} {an_after} texture", "change the texture of the {obj} from {before} to {after}",
                  "make the surface of the {obj} {after}"),
                 "the texture of the {obj} changes from {before} to {after}"),
    "move": (("move the {obj} {way}", "shift the {obj} {way}", "slide the {obj} {way}"),
             "the {obj} moves {way}"),
    "mirror": (("flip the whole image {direction}ly", "mirror the whole image {direction}ly",
                "apply a {direction} flip to the whole image"),
               "the whole image is flipped {direction}ly"),
    "rotate": (("rotate the whole image {turn} degrees {direction}", "turn the whole image {turn} degrees {direction}",
                "rotate the entire image by {turn} degrees {direction}"),
               "the whole image is rotated {turn} degrees {direction}"),
    "zoom in": (("zoom in on the center of the image", "zoom in toward the middle of the scene",
                 "zoom in so the central part fills the frame"),
                "the camera zooms in on the center of the scene"),
    "zoom out": (("zoom out, leaving an empty margin around the scene", "zoom out to show the scene from farther away",
                  "zoom out so a border of background surrounds the scene"),
                 "the camera zooms out, leaving a margin around the scene"),
    "resize": (("make the {obj} {direction}", "draw the {obj} {direction}", "resize the {obj} to be {direction}"),
               "the {obj} becomes {direction} ({before} to {after})"),
    "motion": (("turn the {obj} to point {direction}", "make the {obj} point {direction}",
                "change the direction of the {obj} to point {direction}"),
               "the {obj} turns from {before} to {after}"),
    "text": (("change the text on the {obj} from {before} to {after}", "replace the word {before} on the {obj} with {after}",
              "make the {obj} read {after} instead of {before}"),
             "the text on the {obj} changes from {before} to {after}"),
    "other": (("change the {attr} of the {obj} from {before} to {after}",),
              "the {attr} of the {obj} changes from {before_or_unset} to {after_or_none}"),
    "other, no before": (("change the {attr} of the {obj} to {after}",),
                         "the {attr} of the {obj} changes from {before_or_unset} to {after_or_none}"),
}


def _row(change: dict) -> tuple[tuple[str, ...], str]:
    """The TEXTS row of a change."""
    op = change["op"]
    if op == "zoom":
        return TEXTS["zoom in" if change["direction"] == "in" else "zoom out"]
    return TEXTS.get(op) or TEXTS["other" if change["before"] else "other, no before"]


def clause_options(change: dict) -> list[str]:
    """Every wording of the imperative clause for a change, in the fixed order of its TEXTS row."""
    words = _words(change)
    return [template.format(**words) for template in _row(change)[0]]


def _clause(change: dict, rng: random.Random) -> str:
    """One imperative clause for a change, its wording drawn by `rng`."""
    return rng.choice(clause_options(change))


def _join(parts: list[str]) -> str:
    if len(parts) <= 2:
        return " and ".join(parts)
    return ", ".join(parts[:-1]) + ", and " + parts[-1]


def render_reference_instruction(changes: list[dict], rng: random.Random) -> str:
    """A reference instruction covering every change (primary first, viewpoint changes last, then secondary)."""
    edits = [_clause(c, rng) for c in changes if c["primary"] and c["op"] not in VIEW_OPS]
    views = [_clause(c, rng) for c in changes if c["primary"] and c["op"] in VIEW_OPS]
    sides = [_clause(c, rng) for c in changes if not c["primary"]]
    text = _join(edits)
    if views:
        text = f"{text}, then {_join(views)}" if text else _join(views)
    if sides and text:
        glue = rng.choice((", and also {}", ". Also, {}", ". Additionally, {}"))
        text += glue.format(_join(sides))
    elif sides:
        text = _join(sides)
    return _capitalised(text)


def _capitalised(text: str) -> str:
    """First letter of every sentence upper-case and a final stop."""
    sentences = text.split(". ")
    return ". ".join(s[:1].upper() + s[1:] for s in sentences) + "."


def _gt_sentence(change: dict) -> str:
    """The change's sentence in the `gt` struct (its TEXTS row)."""
    return _row(change)[1].format(**_words(change))


def gt_texts(changes: list[dict]) -> dict:
    """The `gt` struct: primary and secondary change sentences and an overall description."""
    primary = [_capitalised(_gt_sentence(c)) for c in changes if c["primary"]]
    secondary = [_capitalised(_gt_sentence(c)) for c in changes if not c["primary"]]
    overall = " ".join(primary)
    if secondary:
        side = " ".join(secondary)
        overall += " As a side effect, " + side[:1].lower() + side[1:]
    overall = (overall + " Everything else in the scene stays the same.").strip() if changes else \
        "The two images show the same scene without any change."
    return {"primary_changes": primary, "secondary_changes": secondary, "overall": overall}
