"""Procedural edit pairs with exact structured ground truth (the embedded default data).

A scene is a background colour and 1–4 objects (shape + colour + texture; no two share shape and
colour, so "the red star" names one object). An edit changes the scene or the whole image and is
recorded exactly as `changes` (see `records.make_change`); the reference instruction and the `gt`
texts are written from those changes.

Layouts: "grid" puts each object in one whole `cell`×`cell` cell and moves it by whole cells, so a
tiny vision model whose merged tokens cover 32×32 px sees one object per token; "free" draws objects
of random size and position and moves them by a fraction of the canvas.

Rendering order: objects on the background → viewpoint (mirror, rotate, zoom) → style → tone.
"""
from __future__ import annotations

import io
import math
import random
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

import datasets
import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps
from tqdm.auto import tqdm

from editcaption import records
from editcaption.vocab import BACKGROUNDS, COLORS, SHAPES, SIGN_WORDS, STYLES, TEXTURES

DEFAULT_MIX = {"semantic": 0.25, "stylistic": 0.25, "structural": 0.5}
EDIT_TYPES = {
    "semantic": ("add", "remove", "replace", "background"),
    "stylistic": ("color", "style", "tone", "material"),
    "structural": ("move", "mirror", "rotate", "zoom", "resize", "motion", "text", "hybrid"),
}
VIEW_OPS = ("mirror", "rotate", "zoom")
# Ops that act on one existing object (each object takes part in at most one change of a pair).
OBJECT_OPS = ("remove", "replace", "color", "material", "move", "resize", "motion", "text")
HYBRID_STRUCTURAL = ("move", "mirror", "rotate", "zoom", "resize", "motion", "text")
HYBRID_ANY = ("add", "remove", "replace", "background", "color", "style", "tone", "material") + HYBRID_STRUCTURAL
DIRECTIONS = ("left", "right", "up", "down")

LARGE, SMALL = 0.85, 0.5  # grid: object side as a fraction of its cell
FREE_SIDE = {"large": (0.20, 0.30), "small": (0.10, 0.15)}  # free: object side as a fraction of the canvas
FREE_RESIZE = 1.7  # free: factor between a small and a large object
ZOOM_IN_CROP = 0.75  # zoom in keeps the central 75 % of the canvas
ZOOM_OUT_SCALE = 0.5  # zoom out shrinks the scene to half and pads with the background
TONE_BLEND = 0.35  # brighter/darker: blend this much towards white/black
PNG_LEVEL = 1  # zlib level of the stored PNGs (fast; the images are small)
MAX_ATTEMPTS = 200


# ----------------------------------------------------------------------------------------------
# Scenes


@dataclass
class Obj:
    """One object of a scene; `pos` is (row, col) in the grid layout, the centre (x, y) in px in free."""

    uid: int
    shape: str  # a SHAPES entry or "sign"
    color: str
    texture: str = "solid"
    size: str = "large"  # large or small
    pos: tuple = (0, 0)
    side: float = 0.0  # free layout: side of the object's square in px
    pointing: str = ""  # arrows: left/right/up/down
    word: str = ""  # signs: a SIGN_WORDS entry

    @property
    def name(self) -> str:
        return f"{self.color} {self.shape}"


@dataclass
class Scene:
    background: str
    objects: list = field(default_factory=list)
    style: str = "plain"
    view: tuple = ()  # (op, direction) of a viewpoint change
    tone: str = ""  # "", brighter or darker

    def copy(self) -> "Scene":
        return replace(self, objects=[replace(o) for o in self.objects])

    def identities(self) -> set:
        return {(o.shape, o.color) for o in self.objects}

    def next_uid(self) -> int:
        return max((o.uid for o in self.objects), default=-1) + 1


class GridLayout:
    """Objects fill whole cells of a `cell`×`cell` grid; moves are whole cells."""

    def __init__(self, size: int, cell: int):
        if cell < 8 or size % cell or size // cell < 2:
            raise ValueError(f"grid layout: size {size} must be a multiple of cell {cell} with at least 2×2 cells "
                             f"(e.g. size 96 or 128 with cell 32), or use layout='free'")
        self.size, self.cell, self.n = size, cell, size // cell
        self.capacity = min(4, self.n * self.n - 1)  # keep a free cell for add and move

    def side(self, obj: Obj) -> int:
        return round(self.cell * (LARGE if obj.size == "large" else SMALL))

    def centre(self, obj: Obj) -> tuple[float, float]:
        row, col = obj.pos
        return (col + 0.5) * self.cell, (row + 0.5) * self.cell

    def _region(self, direction: str) -> list[tuple[int, int]]:
        half, upper = self.n // 2, (self.n + 1) // 2
        cells = [(r, c) for r in range(self.n) for c in range(self.n)]
        keep = {"left": lambda r, c: c < half, "right": lambda r, c: c >= upper,
                "up": lambda r, c: r < half, "down": lambda r, c: r >= upper, "": lambda r, c: True}[direction]
        return [rc for rc in cells if keep(*rc)]

    def place(self, rng: random.Random, scene: Scene, obj: Obj, region: str = "") -> bool:
        taken = {o.pos for o in scene.objects if o is not obj}
        free = [rc for rc in self._region(region) if rc not in taken]
        if not free:
            return False
        obj.pos = rng.choice(free)
        return True

    def move(self, rng: random.Random, scene: Scene, obj: Obj, direction: str) -> bool:
        dr, dc = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}[direction]
        taken = {o.pos for o in scene.objects if o is not obj}
        row, col = obj.pos
        free = []
        while True:
            row, col = row + dr, col + dc
            if not (0 <= row < self.n and 0 <= col < self.n):
                break
            if (row, col) not in taken:
                free.append((row, col))
        if not free:
            return False
        obj.pos = rng.choice(free)
        return True

    def resize(self, scene: Scene, obj: Obj, larger: bool) -> bool:
        obj.size = "large" if larger else "small"
        return True


class FreeLayout:
    """Objects of random size anywhere on the canvas (no overlaps); moves are a fraction of the canvas."""

    def __init__(self, size: int):
        if size < 32:
            raise ValueError(f"free layout: size {size} is too small (at least 32 px)")
        self.size = size
        self.capacity = 4

    def side(self, obj: Obj) -> int:
        return max(4, round(obj.side))

    def centre(self, obj: Obj) -> tuple[float, float]:
        return obj.pos

    def _fits(self, scene: Scene, obj: Obj, pos: tuple[float, float], side: float) -> bool:
        x, y = pos
        half = side / 2
        if not (half <= x <= self.size - half and half <= y <= self.size - half):
            return False
        for other in scene.objects:
            if other is obj:
                continue
            ox, oy = other.pos
            gap = (side + other.side) / 2 + 2  # squares kept apart along x or y
            if abs(x - ox) < gap and abs(y - oy) < gap:
                return False
        return True

    def place(self, rng: random.Random, scene: Scene, obj: Obj, region: str = "") -> bool:
        lo, hi = FREE_SIDE[obj.size]
        obj.side = rng.uniform(lo, hi) * self.size
        half, s = obj.side / 2, self.size
        xs, ys = (half, s - half), (half, s - half)
        if region == "left":
            xs = (half, 0.42 * s)
        elif region == "right":
            xs = (0.58 * s, s - half)
        elif region == "up":
            ys = (half, 0.42 * s)
        elif region == "down":
            ys = (0.58 * s, s - half)
        for _ in range(40):
            pos = (rng.uniform(*xs), rng.uniform(*ys))
            if xs[0] <= xs[1] and ys[0] <= ys[1] and self._fits(scene, obj, pos, obj.side):
                obj.pos = pos
                return True
        return False

    def move(self, rng: random.Random, scene: Scene, obj: Obj, direction: str) -> bool:
        dx, dy = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}[direction]
        for _ in range(20):
            step = rng.uniform(0.15, 0.4) * self.size
            pos = (obj.pos[0] + dx * step, obj.pos[1] + dy * step)
            if self._fits(scene, obj, pos, obj.side):
                obj.pos = pos
                return True
        return False

    def resize(self, scene: Scene, obj: Obj, larger: bool) -> bool:
        side = obj.side * FREE_RESIZE if larger else obj.side / FREE_RESIZE
        if not self._fits(scene, obj, obj.pos, side):
            return False
        obj.side, obj.size = side, "large" if larger else "small"
        return True


def make_layout(layout: str, size: int, cell: int = 32) -> GridLayout | FreeLayout:
    if layout == "grid":
        return GridLayout(size, cell)
    if layout == "free":
        return FreeLayout(size)
    raise ValueError(f"layout {layout!r}: expected 'grid' or 'free'")


# ----------------------------------------------------------------------------------------------
# Rendering


def _polygon(points, side: int):
    return [(x * side, y * side) for x, y in points]


def _radial(centre_y: float, radii: tuple, start_deg: float) -> list[tuple[float, float]]:
    """Polygon points around (0.5, centre_y), alternating through `radii`, evenly spaced."""
    step = 360 / len(radii)
    angles = [math.radians(start_deg + step * k) for k in range(len(radii))]
    return [(0.5 + r * math.cos(a), centre_y + r * math.sin(a)) for r, a in zip(radii, angles)]


_STAR = _radial(0.55, (0.5, 0.2) * 5, -90)
_HEXAGON = _radial(0.5, (0.5,) * 6, 0)
_ARROW_RIGHT = [(0.0, 0.34), (0.52, 0.34), (0.52, 0.08), (1.0, 0.5), (0.52, 0.92), (0.52, 0.66), (0.0, 0.66)]
_SUPERSAMPLE = 4


@lru_cache(maxsize=4096)
def _shape_mask(shape: str, side: int, pointing: str) -> Image.Image:
    """Anti-aliased L mask of a shape in a side×side box."""
    big = side * _SUPERSAMPLE
    mask = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(mask)
    if shape == "circle":
        draw.ellipse((0, 0, big - 1, big - 1), fill=255)
    elif shape == "square":
        draw.rectangle(_box((0.06, 0.06, 0.94, 0.94), big), fill=255)
    elif shape == "triangle":
        draw.polygon(_polygon([(0.5, 0.04), (0.97, 0.93), (0.03, 0.93)], big), fill=255)
    elif shape == "star":
        draw.polygon(_polygon(_STAR, big), fill=255)
    elif shape == "cross":
        draw.rectangle(_box((0.33, 0.02, 0.67, 0.98), big), fill=255)
        draw.rectangle(_box((0.02, 0.33, 0.98, 0.67), big), fill=255)
    elif shape == "diamond":
        draw.polygon(_polygon([(0.5, 0.0), (1.0, 0.5), (0.5, 1.0), (0.0, 0.5)], big), fill=255)
    elif shape == "ring":
        draw.ellipse((0, 0, big - 1, big - 1), fill=255)
        draw.ellipse(_box((0.27, 0.27, 0.73, 0.73), big), fill=0)
    elif shape == "arrow":
        draw.polygon(_polygon(_ARROW_RIGHT, big), fill=255)
    elif shape == "heart":
        draw.ellipse(_box((0.0, 0.05, 0.54, 0.58), big), fill=255)
        draw.ellipse(_box((0.46, 0.05, 1.0, 0.58), big), fill=255)
        draw.polygon(_polygon([(0.03, 0.42), (0.97, 0.42), (0.5, 0.97)], big), fill=255)
    elif shape == "hexagon":
        draw.polygon(_polygon(_HEXAGON, big), fill=255)
    elif shape == "sign":
        draw.rectangle(_box((0.0, 0.18, 1.0, 0.82), big), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    mask = mask.reduce(_SUPERSAMPLE)
    turn = {"left": Image.Transpose.FLIP_LEFT_RIGHT, "up": Image.Transpose.ROTATE_90,
            "down": Image.Transpose.ROTATE_270}.get(pointing if shape == "arrow" else "")
    return mask.transpose(turn) if turn is not None else mask


def _box(frac, side: int):
    return tuple(round(v * side) for v in frac)


@lru_cache(maxsize=1)
def _font() -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=40)
    except (TypeError, OSError):  # Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


@lru_cache(maxsize=512)
def _word_mask(word: str, width: int, height: int) -> Image.Image:
    """The word drawn with PIL's default font, scaled to fit width×height (L mask, centred)."""
    font = _font()
    x0, y0, x1, y1 = font.getbbox(word)
    text = Image.new("L", (x1 - x0 + 2, y1 - y0 + 2), 0)
    ImageDraw.Draw(text).text((1 - x0, 1 - y0), word, fill=255, font=font)
    scale = min(width / text.width, height / text.height)
    fitted = (max(1, round(text.width * scale)), max(1, round(text.height * scale)))
    text = text.resize(fitted, Image.Resampling.LANCZOS)
    out = Image.new("L", (width, height), 0)
    out.paste(text, ((width - text.width) // 2, (height - text.height) // 2))
    return out


@lru_cache(maxsize=256)
def _texture_fill(color: str, texture: str, side: int) -> Image.Image:
    """side×side RGB fill of a colour with a texture (stripes, dots, checks in a light tint)."""
    base = np.array(COLORS[color], dtype=np.float32)
    tint = base * 0.4 + 255 * 0.6
    yy, xx = np.mgrid[0:side, 0:side]
    period = max(4, side // 5)
    if texture == "solid":
        marked = np.zeros((side, side), dtype=bool)
    elif texture == "striped":
        marked = ((xx + yy) // max(2, period // 2)) % 2 == 1
    elif texture == "dotted":
        dx, dy = xx % period - period // 2, yy % period - period // 2
        marked = dx * dx + dy * dy <= max(1, (period // 3) ** 2)
    elif texture == "checkered":
        marked = (xx // max(2, period // 2) + yy // max(2, period // 2)) % 2 == 1
    else:
        raise ValueError(f"unknown texture {texture!r}")
    pixels = np.where(marked[..., None], tint, base)
    return Image.fromarray(np.round(pixels).astype(np.uint8), "RGB")


def _luma(rgb) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


@lru_cache(maxsize=4096)
def _sprite(shape: str, color: str, texture: str, side: int, pointing: str, word: str,
            outline: bool) -> tuple[Image.Image, Image.Image]:
    """(RGB fill, L mask) of one object; `outline` draws only its contour (the outline style)."""
    mask = _shape_mask(shape, side, pointing)
    if outline:
        width = max(3, (side // 8) | 1)
        mask = ImageChops.subtract(mask, mask.filter(ImageFilter.MinFilter(width)))
    if shape != "sign":
        return _texture_fill(color, texture, side), mask
    rgb = COLORS[color]
    ink = (255, 255, 255) if _luma(rgb) < 140 else (0, 0, 0)
    text = Image.new("L", (side, side), 0)
    tw, th = round(side * 0.86), max(1, round(side * 0.4))
    text.paste(_word_mask(word, tw, th), ((side - tw) // 2, (side - th) // 2))
    if outline:  # contour of the board plus the word, both in the sign's colour
        return Image.new("RGB", (side, side), rgb), ImageChops.lighter(mask, text)
    fill = Image.new("RGB", (side, side), rgb)
    fill.paste(ink, (0, 0, side, side), text)
    return fill, mask


def _apply_view(img: Image.Image, view: tuple, background: tuple) -> Image.Image:
    if not view:
        return img
    op, direction = view
    size = img.width
    if op == "mirror":
        return img.transpose(Image.Transpose.FLIP_LEFT_RIGHT if direction == "horizontal"
                             else Image.Transpose.FLIP_TOP_BOTTOM)
    if op == "rotate":
        return img.transpose(Image.Transpose.ROTATE_270 if direction == "clockwise" else Image.Transpose.ROTATE_90)
    if op == "zoom" and direction == "in":
        margin = size * (1 - ZOOM_IN_CROP) / 2
        return img.resize((size, size), Image.Resampling.BILINEAR, box=(margin, margin, size - margin, size - margin))
    if op == "zoom" and direction == "out":
        small = round(size * ZOOM_OUT_SCALE)
        out = Image.new("RGB", (size, size), background)
        out.paste(img.resize((small, small), Image.Resampling.BOX), ((size - small) // 2, (size - small) // 2))
        return out
    raise ValueError(f"unknown viewpoint change {view!r}")


def _apply_style(img: Image.Image, style: str, block: int) -> Image.Image:
    if style in ("plain", "outline"):  # outline is drawn per object
        return img
    if style == "pixelated":
        small = img.resize((img.width // block, img.height // block), Image.Resampling.BOX)
        return small.resize(img.size, Image.Resampling.NEAREST)
    if style == "inverted":
        return ImageOps.invert(img)
    raise ValueError(f"unknown style {style!r}")


_TONE_LUT = {
    "brighter": [round(v + (255 - v) * TONE_BLEND) for v in range(256)] * 3,
    "darker": [round(v * (1 - TONE_BLEND)) for v in range(256)] * 3,
}


def render(scene: Scene, layout: GridLayout | FreeLayout) -> Image.Image:
    """The scene as an RGB image of layout.size px."""
    size = layout.size
    background = BACKGROUNDS[scene.background]
    img = Image.new("RGB", (size, size), background)
    outline = scene.style == "outline"
    for obj in scene.objects:
        side = layout.side(obj)
        fill, mask = _sprite(obj.shape, obj.color, obj.texture, side, obj.pointing, obj.word, outline)
        cx, cy = layout.centre(obj)
        img.paste(fill, (round(cx - side / 2), round(cy - side / 2)), mask)
    img = _apply_view(img, scene.view, background)
    block = max(2, layout.cell // 4) if isinstance(layout, GridLayout) else max(2, size // 16)
    img = _apply_style(img, scene.style, block)
    if scene.tone:
        img = img.point(_TONE_LUT[scene.tone])
    return img


def _png(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_LEVEL)
    return {"bytes": buf.getvalue(), "path": None}


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
            "source_image": _png(src_img),
            "target_image": _png(tgt_img),
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
