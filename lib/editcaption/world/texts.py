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


def clause_options(change: dict) -> list[str]:
    """Every wording of the imperative clause for a change (lower-case, no final stop), in a fixed order:
    the reference instruction picks one; the simulated corrector picks the one closest to a model's text."""
    op, obj, attr = change["op"], change["object"], change["attribute"]
    before, after, direction = change["before"], change["after"], change["direction"]
    if op == "add":
        where = f" {_PLACE_WORDS[direction]}" if direction in _PLACE_WORDS else ""
        thing = _a(_named(after, obj))
        options = [f"add {thing}{where}", f"place {thing}{where}", f"draw {thing}{where}",
                   f"put {thing}{where}"]
    elif op == "remove":
        thing = _named(before, obj)
        options = [f"remove the {thing}", f"delete the {thing}", f"erase the {thing}"]
    elif op == "replace":
        options = [f"replace the {before} with {_a(after)}", f"swap the {before} for {_a(after)}",
                   f"turn the {before} into {_a(after)}"]
    elif op == "background":
        options = [f"change the background from {before} to {after}",
                   f"make the background {after} instead of {before}",
                   f"recolor the background {after}"]
    elif op == "color":
        thing = _named(before, obj)
        options = [f"change the {thing} to {after}", f"recolor the {thing} {after}", f"make the {thing} {after}",
                   f"paint the {thing} {after}", f"change the color of the {thing} from {before} to {after}"]
    elif op == "style":
        look = _a(_STYLE_WORDS.get(after, after))
        options = [f"convert the whole image to {look} style", f"give the whole image {look} style",
                   f"redraw the whole image with {look} style"]
    elif op == "tone":
        shade = after or direction
        options = [f"make the whole image {shade}", f"render the whole image {shade}", f"make the entire image {shade}"]
    elif op == "material":
        options = [f"give the {obj} {_a(after)} texture", f"change the texture of the {obj} from {before} to {after}",
                   f"make the surface of the {obj} {after}"]
    elif op == "move":
        way = _MOVE_WORDS.get(direction, direction)
        options = [f"move the {obj} {way}", f"shift the {obj} {way}", f"slide the {obj} {way}"]
    elif op == "mirror":
        options = [f"flip the whole image {direction}ly", f"mirror the whole image {direction}ly",
                   f"apply a {direction} flip to the whole image"]
    elif op == "rotate":
        turn = after if after.isdigit() else "90"
        options = [f"rotate the whole image {turn} degrees {direction}",
                   f"turn the whole image {turn} degrees {direction}",
                   f"rotate the entire image by {turn} degrees {direction}"]
    elif op == "zoom" and direction == "in":
        options = ["zoom in on the center of the image", "zoom in toward the middle of the scene",
                   "zoom in so the central part fills the frame"]
    elif op == "zoom":
        options = ["zoom out, leaving an empty margin around the scene", "zoom out to show the scene from farther away",
                   "zoom out so a border of background surrounds the scene"]
    elif op == "resize":
        options = [f"make the {obj} {direction}", f"draw the {obj} {direction}", f"resize the {obj} to be {direction}"]
    elif op == "motion":
        options = [f"turn the {obj} to point {direction}", f"make the {obj} point {direction}",
                   f"change the direction of the {obj} to point {direction}"]
    elif op == "text":
        options = [f"change the text on the {obj} from {before} to {after}",
                   f"replace the word {before} on the {obj} with {after}",
                   f"make the {obj} read {after} instead of {before}"]
    elif before:
        options = [f"change the {attr} of the {obj} from {before} to {after}"]
    else:
        options = [f"change the {attr} of the {obj} to {after}"]
    return options


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
    op, obj = change["op"], change["object"]
    before, after, direction = change["before"], change["after"], change["direction"]
    if op == "add":
        where = f" {_PLACE_WORDS[direction]}" if direction in _PLACE_WORDS else ""
        return f"{_a(_named(after, obj))} is added{where}"
    if op == "remove":
        return f"the {_named(before, obj)} is removed"
    if op == "replace":
        return f"the {before} is replaced by {_a(after)}"
    if op == "background":
        return f"the background color changes from {before} to {after}"
    if op == "color":
        return f"the {_named(before, obj)} changes color from {before} to {after}"
    if op == "style":
        return (f"the whole image changes from {_a(_STYLE_WORDS.get(before, before))} style to "
                f"{_a(_STYLE_WORDS.get(after, after))} style")
    if op == "tone":
        return f"the whole image becomes {after or direction}"
    if op == "material":
        return f"the texture of the {obj} changes from {before} to {after}"
    if op == "move":
        return f"the {obj} moves {_MOVE_WORDS.get(direction, direction)}"
    if op == "mirror":
        return f"the whole image is flipped {direction}ly"
    if op == "rotate":
        return f"the whole image is rotated {after if after.isdigit() else 90} degrees {direction}"
    if op == "zoom":
        return ("the camera zooms in on the center of the scene" if direction == "in"
                else "the camera zooms out, leaving a margin around the scene")
    if op == "resize":
        return f"the {obj} becomes {direction} ({before} to {after})"
    if op == "motion":
        return f"the {obj} turns from {before} to {after}"
    if op == "text":
        return f"the text on the {obj} changes from {before} to {after}"
    return f"the {change['attribute']} of the {obj} changes from {before or 'unspecified'} to {after or 'none'}"


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
