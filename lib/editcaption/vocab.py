"""The closed vocabulary of the synthetic world, shared by the generator and the rule judge.

The synthetic generator draws only these objects, colours, textures and words; the rule judge
uses the same lists (plus synonyms) to find what an instruction talks about.
"""
from __future__ import annotations

# Shapes the generator can draw; each is one noun in instructions.
SHAPES = ("circle", "square", "triangle", "star", "cross", "diamond", "ring", "arrow", "heart", "hexagon")

# Non-shape objects: a sign carries a word (text edits).
OBJECTS = SHAPES + ("sign",)

# Object colours (name -> RGB). Chosen far apart so a 32 px cell is unambiguous after resizing.
COLORS = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 210, 40),
    "purple": (140, 60, 190),
    "orange": (245, 140, 30),
    "cyan": (40, 200, 210),
    "pink": (245, 130, 190),
    "brown": (130, 80, 40),
    "black": (20, 20, 20),
}

# Background colours (distinct from the object colours above).
BACKGROUNDS = {
    "white": (245, 245, 245),
    "gray": (150, 150, 150),
    "beige": (225, 210, 175),
    "navy": (30, 40, 90),
    "mint": (180, 235, 200),
}

# Surface textures (the "material" edits of the stylistic category).
TEXTURES = ("solid", "striped", "dotted", "checkered")

# Whole-image styles (the "style transfer" edits of the stylistic category).
STYLES = ("plain", "outline", "pixelated", "inverted")

# Words a synthetic sign can show (text modification edits).
SIGN_WORDS = ("OPEN", "SHOP", "EXIT", "STOP", "SALE", "CAFE", "BAR", "INN")

# Direction words and their opposites (an instruction with the opposite word is an orientation error).
OPPOSITE = {
    "left": "right",
    "right": "left",
    "up": "down",
    "down": "up",
    "in": "out",
    "out": "in",
    "clockwise": "counterclockwise",
    "counterclockwise": "clockwise",
    "horizontal": "vertical",
    "vertical": "horizontal",
    "larger": "smaller",
    "smaller": "larger",
    "brighter": "darker",
    "darker": "brighter",
}

# Synonyms an instruction may use for a canonical word (canonical -> alternatives).
SYNONYMS = {
    "left": ("leftward", "leftwards", "to the left"),
    "right": ("rightward", "rightwards", "to the right"),
    "up": ("upward", "upwards", "higher", "top", "above"),
    "down": ("downward", "downwards", "lower", "bottom", "below"),
    "in": ("zoom in", "closer", "magnify"),
    "out": ("zoom out", "farther", "wider"),
    "clockwise": ("cw",),
    "counterclockwise": ("anticlockwise", "anti-clockwise", "counter-clockwise", "ccw"),
    "horizontal": ("horizontally", "left to right", "left-right"),
    "vertical": ("vertically", "upside down", "top to bottom"),
    "larger": ("bigger", "enlarge", "grow", "scale up"),
    "smaller": ("shrink", "reduce", "scale down", "tinier"),
    "brighter": ("brighten", "lighter", "lighten", "increase the brightness"),
    "darker": ("darken", "dim", "dimmer", "decrease the brightness"),
    "gray": ("grey",),
    "square": ("box",),
    "ring": ("donut", "annulus"),
    "diamond": ("rhombus",),
    "sign": ("label", "board"),
}
