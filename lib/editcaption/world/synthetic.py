"""Procedural edit pairs with exact structured ground truth (the embedded default data): the 16 edit ops, each
changing a scene (`scenes`) and recording the change exactly as `changes` (see `records.make_change`); the
plan of a set of pairs in the paper's category mix; the pairs with their reference instruction and `gt`
texts (`texts`); the `editcaption synth` command.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field, replace
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from editcaption import records
from editcaption.vocab import BACKGROUNDS, COLORS, SHAPES, SIGN_WORDS, STYLES, TEXTURES
from editcaption.world.scenes import DIRECTIONS, VIEW_OPS, FreeLayout, GridLayout, Obj, Scene, make_layout, png_record, render
from editcaption.world.texts import gt_texts, render_reference_instruction

DEFAULT_MIX = {"semantic": 0.25, "stylistic": 0.25, "structural": 0.5}
EDIT_TYPES = {
    "semantic": ("add", "remove", "replace", "background"),
    "stylistic": ("color", "style", "tone", "material"),
    "structural": ("move", "mirror", "rotate", "zoom", "resize", "motion", "text", "hybrid"),
}
# Ops that act on one existing object (each object takes part in at most one change of a pair).
OBJECT_OPS = ("remove", "replace", "color", "material", "move", "resize", "motion", "text")
HYBRID_STRUCTURAL = ("move", "mirror", "rotate", "zoom", "resize", "motion", "text")
HYBRID_ANY = ("add", "remove", "replace", "background", "color", "style", "tone", "material") + HYBRID_STRUCTURAL
MAX_ATTEMPTS = 200


# ----------------------------------------------------------------------------------------------
# Edits: each takes the pair's context, changes ctx.target and returns one change (None: not possible here)


@dataclass
class _Ctx:
    rng: random.Random
    layout: GridLayout | FreeLayout
    source: Scene
    target: Scene
    used: set = field(default_factory=set)  # uids of objects already part of a change

    def pick(self, keep=lambda o: True) -> Obj | None:
        free = [o for o in self.target.objects if o.uid not in self.used and keep(o)]
        return self.rng.choice(free) if free else None

    def taken(self) -> set:
        return self.source.identities() | self.target.identities()

    def new_color(self, shape: str, exclude: str = "") -> str | None:
        taken = self.taken()
        options = [c for c in COLORS if c != exclude and (shape, c) not in taken]
        return self.rng.choice(options) if options else None


def _op_add(ctx: _Ctx, primary: bool = True) -> dict | None:
    shape = ctx.rng.choice(SHAPES)
    color = ctx.new_color(shape)
    direction = ctx.rng.choice(DIRECTIONS)
    if color is None:
        return None
    obj = Obj(ctx.target.next_uid(), shape, color, pointing="right" if shape == "arrow" else "")
    if not ctx.layout.place(ctx.rng, ctx.target, obj, region=direction):
        return None
    ctx.target.objects.append(obj)
    ctx.used.add(obj.uid)
    return records.make_change("add", obj.name, "color", "", color, direction, primary)


def _op_remove(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick()
    if obj is None:
        return None
    ctx.target.objects.remove(obj)
    ctx.used.add(obj.uid)
    return records.make_change("remove", obj.name, "color", obj.color, "", "", primary)


def _op_replace(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick()
    if obj is None:
        return None
    shape = ctx.rng.choice([s for s in SHAPES if s != obj.shape])
    color = ctx.new_color(shape)
    if color is None:
        return None
    old = obj.name
    new = Obj(obj.uid, shape, color, size=obj.size, pos=obj.pos, side=obj.side,
              pointing="right" if shape == "arrow" else "")
    ctx.target.objects[ctx.target.objects.index(obj)] = new
    ctx.used.add(obj.uid)
    return records.make_change("replace", old, "object", old, new.name, "", primary)


def _op_background(ctx: _Ctx, primary: bool = True) -> dict | None:
    before = ctx.target.background
    if before != ctx.source.background:
        return None
    after = ctx.rng.choice([b for b in BACKGROUNDS if b != before])
    ctx.target.background = after
    return records.make_change("background", "background", "color", before, after, "", primary)


def _op_color(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick()
    if obj is None:
        return None
    color = ctx.new_color(obj.shape, exclude=obj.color)
    if color is None:
        return None
    name, before = obj.name, obj.color
    obj.color = color
    ctx.used.add(obj.uid)
    return records.make_change("color", name, "color", before, color, "", primary)


def _op_style(ctx: _Ctx, primary: bool = True) -> dict | None:
    if ctx.target.style != "plain":
        return None
    ctx.target.style = ctx.rng.choice([s for s in STYLES if s != "plain"])
    return records.make_change("style", "image", "style", "plain", ctx.target.style, "", primary)


def _op_tone(ctx: _Ctx, primary: bool = True) -> dict | None:
    if ctx.target.tone:
        return None
    ctx.target.tone = ctx.rng.choice(("brighter", "darker"))
    return records.make_change("tone", "image", "brightness", "", ctx.target.tone, ctx.target.tone, primary)


def _op_material(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick(lambda o: o.shape != "sign")
    if obj is None:
        return None
    before = obj.texture
    obj.texture = ctx.rng.choice([t for t in TEXTURES if t != before])
    ctx.used.add(obj.uid)
    return records.make_change("material", obj.name, "texture", before, obj.texture, "", primary)


def _op_move(ctx: _Ctx, primary: bool = True) -> dict | None:
    candidates = [(o, d) for o in ctx.target.objects if o.uid not in ctx.used for d in DIRECTIONS]
    ctx.rng.shuffle(candidates)
    for obj, direction in candidates:
        if ctx.layout.move(ctx.rng, ctx.target, obj, direction):
            ctx.used.add(obj.uid)
            return records.make_change("move", obj.name, "position", "", "", direction, primary)
    return None


def _op_view(op: str, directions: tuple, **fields):
    def apply(ctx: _Ctx, primary: bool = True) -> dict | None:
        if ctx.target.view:
            return None
        direction = ctx.rng.choice(directions)
        ctx.target.view = (op, direction)
        return records.make_change(op, direction=direction, primary=primary, **fields)

    return apply


def _op_resize(ctx: _Ctx, primary: bool = True) -> dict | None:
    larger = ctx.rng.random() < 0.5
    free = [o for o in ctx.target.objects if o.uid not in ctx.used]
    ctx.rng.shuffle(free)
    free.sort(key=lambda o: (o.size == "small") != larger)  # objects that can go the drawn way first
    for obj in free:
        before = obj.size
        if ctx.layout.resize(ctx.target, obj, before == "small"):
            ctx.used.add(obj.uid)
            direction = "larger" if before == "small" else "smaller"
            return records.make_change("resize", obj.name, "size", before, obj.size, direction, primary)
    return None


def _op_motion(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick(lambda o: o.shape == "arrow")
    if obj is None:
        return None
    before = obj.pointing
    obj.pointing = ctx.rng.choice([d for d in DIRECTIONS if d != before])
    ctx.used.add(obj.uid)
    return records.make_change("motion", obj.name, "pose", f"pointing {before}", f"pointing {obj.pointing}",
                               obj.pointing, primary)


def _op_text(ctx: _Ctx, primary: bool = True) -> dict | None:
    obj = ctx.pick(lambda o: o.shape == "sign")
    if obj is None:
        return None
    before = obj.word
    obj.word = ctx.rng.choice([w for w in SIGN_WORDS if w != before])
    ctx.used.add(obj.uid)
    return records.make_change("text", obj.name, "text", before, obj.word, "", primary)


OPS = {
    "add": _op_add, "remove": _op_remove, "replace": _op_replace, "background": _op_background,
    "color": _op_color, "style": _op_style, "tone": _op_tone, "material": _op_material,
    "move": _op_move, "resize": _op_resize, "motion": _op_motion, "text": _op_text,
    "mirror": _op_view("mirror", ("horizontal", "vertical"), object="image", attribute="orientation"),
    "rotate": _op_view("rotate", ("clockwise", "counterclockwise"), object="image", attribute="rotation",
                       before="0", after="90"),
    "zoom": _op_view("zoom", ("in", "out"), object="camera", attribute="zoom"),
}


# ----------------------------------------------------------------------------------------------
# One pair


def random_scene(rng: random.Random, layout, n_objects: int, ops: list[str], small: bool) -> Scene:
    """A scene of n_objects distinct objects holding what `ops` need (an arrow, a sign)."""
    scene = Scene(background=rng.choice(list(BACKGROUNDS)))
    kinds = [k for k, op in (("arrow", "motion"), ("sign", "text")) if op in ops]
    while len(kinds) < n_objects:
        kind = rng.choice(SHAPES + ("sign",))
        kinds.append(rng.choice(SHAPES) if kind == "sign" and "sign" in kinds else kind)
    rng.shuffle(kinds)
    for uid, shape in enumerate(kinds):
        color = rng.choice([c for c in COLORS if (shape, c) not in scene.identities()])
        texture = "solid" if shape == "sign" or rng.random() < 0.55 else rng.choice(TEXTURES[1:])
        obj = Obj(uid, shape, color, texture, size="small" if rng.random() < 0.25 else "large",
                  pointing=rng.choice(DIRECTIONS) if shape == "arrow" else "",
                  word=rng.choice(SIGN_WORDS) if shape == "sign" else "")
        if small and uid == 0:
            obj.size = rng.choice(("small", "large"))
        if not layout.place(rng, scene, obj):
            break
        scene.objects.append(obj)
    return scene


def _hybrid_ops(rng: random.Random) -> list[str]:
    """2–3 distinct ops, at least one structural, at most one viewpoint op (applied last)."""
    ops, k = [rng.choice(HYBRID_STRUCTURAL)], rng.choice((2, 3))
    while len(ops) < k:
        op = rng.choice(HYBRID_ANY)
        if op not in ops and not (op in VIEW_OPS and any(o in VIEW_OPS for o in ops)):
            ops.append(op)
    return sorted(ops, key=lambda o: o in VIEW_OPS)


def _make_pair(seed: int, index: int, category: str, edit_type: str, secondary: bool, layout) -> dict:
    rng = random.Random(f"syn-{seed}-{index}")
    for _ in range(MAX_ATTEMPTS):
        ops = _hybrid_ops(rng) if edit_type == "hybrid" else [edit_type]
        side_kind = ""
        if secondary:
            side_kind = "color" if "tone" in ops else rng.choice(("tone", "color"))
        needed = sum(op in OBJECT_OPS for op in ops) + (side_kind == "color")
        if needed > layout.capacity:
            continue
        n_objects = rng.randint(max(1, needed), layout.capacity)
        source = random_scene(rng, layout, n_objects, ops, small="resize" in ops)
        ctx = _Ctx(rng, layout, source, source.copy())
        changes = [OPS[op](ctx) for op in ops]
        if side_kind:
            changes.append(OPS[side_kind](ctx, primary=False))
        if any(c is None for c in changes):
            continue
        src_img, tgt_img = render(source, layout), render(ctx.target, layout)
        if src_img.tobytes() == tgt_img.tobytes():
            continue
        if ctx.target.view and render(replace(ctx.target, view=()), layout).tobytes() == tgt_img.tobytes():
            continue  # a viewpoint change that leaves this scene unchanged
        return {
            "id": f"syn-{seed}-{index:06d}",
            "source": "synthetic",
            "source_image": png_record(src_img),
            "target_image": png_record(tgt_img),
            "category": category,
            "edit_type": edit_type,
            "instruction": render_reference_instruction(changes, rng),
            "gt": gt_texts(changes),
            "changes": changes,
        }
    raise RuntimeError(f"synthetic pair {index} (seed {seed}, {edit_type}): no valid scene in {MAX_ATTEMPTS} "
                       f"attempts; use a larger canvas")


def restrict_edit_types(edit_types, mix: dict) -> tuple[dict, dict]:
    """(types per category, mix) keeping only `edit_types` (None: all 16); a category left without types
    drops out of the mix. Unknown names are refused."""
    if edit_types is None:
        return dict(EDIT_TYPES), mix
    wanted = list(dict.fromkeys(edit_types))
    known = {t for types in EDIT_TYPES.values() for t in types}
    unknown = [t for t in wanted if t not in known]
    if unknown or not wanted:
        raise ValueError(f"edit_types {wanted!r}: unknown {unknown}; expected a non-empty subset of {sorted(known)}")
    types = {c: tuple(t for t in EDIT_TYPES[c] if t in wanted) for c in EDIT_TYPES}
    return {c: t for c, t in types.items() if t}, {c: w for c, w in mix.items() if types.get(c)}


def _plan(n: int, seed: int, mix: dict, secondary_rate: float, edit_types=None) -> list[tuple[str, str, bool]]:
    """(category, edit_type, has_secondary) per pair: exact shares of `mix`, then a seeded shuffle."""
    allowed, mix = restrict_edit_types(edit_types, mix)
    unknown = set(mix) - set(records.CATEGORIES)
    if unknown or not mix or any(w < 0 for w in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"mix {mix!r}: expected non-negative weights over {records.CATEGORIES} with a positive sum")
    total = sum(mix.values())
    quotas = {c: n * mix.get(c, 0) / total for c in records.CATEGORIES}
    counts = {c: int(q) for c, q in quotas.items()}
    for c in sorted(quotas, key=lambda c: counts[c] - quotas[c])[: n - sum(counts.values())]:
        counts[c] += 1  # largest remainders
    rng = random.Random(f"syn-plan-{seed}")
    plan = []
    for category in records.CATEGORIES:
        types = list(allowed.get(category, ()))
        rng.shuffle(types)
        plan += [(category, types[k % len(types)]) for k in range(counts[category])]
    rng.shuffle(plan)
    flags = [k < round(n * secondary_rate) for k in range(n)]
    rng.shuffle(flags)
    return [(c, t, f) for (c, t), f in zip(plan, flags)]


def generate_pairs(n: int, seed: int = 0, size: int = 128, layout: str = "grid", mix: dict | None = None,
                   cell: int = 32, progress: bool = True, secondary_rate: float = 0.3,
                   edit_types: list[str] | tuple[str, ...] | None = None, max_objects: int = 0) -> datasets.Dataset:
    """n synthetic edit pairs (EDIT_PAIR_FEATURES); the same arguments give the same rows. `edit_types`
    keeps only those edit types (e.g. a world a tiny model can learn), None keeps all 16; `max_objects`
    caps the objects of a source scene below the layout's 4 (0: no cap)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if not 0 <= secondary_rate <= 1:
        raise ValueError(f"secondary_rate must be in [0, 1], got {secondary_rate}")
    geometry = make_layout(layout, size, cell)
    if max_objects < 0:
        raise ValueError(f"max_objects must be >= 0 (0: the layout's {geometry.capacity}), got {max_objects}")
    geometry.capacity = min(geometry.capacity, max_objects or geometry.capacity)
    plan = _plan(n, seed, DEFAULT_MIX if mix is None else mix, secondary_rate, edit_types)
    rows = [_make_pair(seed, i, *plan[i], geometry)
            for i in tqdm(range(n), desc="synthetic pairs", disable=not progress)]
    return records.pairs_from_rows(rows)


def write_pairs(ds: datasets.Dataset, out_dir: str | Path) -> Path:
    """Save pairs as a `datasets` folder; the same rows give byte-identical files."""
    return records.save_pairs(ds, out_dir)


def synth_main(n: int, seed: int, size: int, out: str | Path, layout: str = "grid") -> Path:
    """Generate n pairs and write them to `out` (the `editcaption synth` command)."""
    return write_pairs(generate_pairs(n, seed=seed, size=size, layout=layout), out)
