"""The synthetic world's scenes and how they are drawn: objects (shape + colour + texture; no two share shape and
colour, so "the red star" names one object) on a background, the two layouts, and the renderer.

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

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageFont, ImageOps

from editcaption.vocab import BACKGROUNDS, COLORS

VIEW_OPS = ("mirror", "rotate", "zoom")
DIRECTIONS = ("left", "right", "up", "down")

LARGE, SMALL = 0.85, 0.5  # grid: object side as a fraction of its cell
FREE_SIDE = {"large": (0.20, 0.30), "small": (0.10, 0.15)}  # free: object side as a fraction of the canvas
FREE_RESIZE = 1.7  # free: factor between a small and a large object
ZOOM_IN_CROP = 0.75  # zoom in keeps the central 75 % of the canvas
ZOOM_OUT_SCALE = 0.5  # zoom out shrinks the scene to half and pads with the background
TONE_BLEND = 0.35  # brighter/darker: blend this much towards white/black
PNG_LEVEL = 1  # zlib level of the stored PNGs (fast; the images are small)


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


def png_record(img: Image.Image) -> dict:
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=PNG_LEVEL)
    return {"bytes": buf.getvalue(), "path": None}
