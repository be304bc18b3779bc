"""Throughput of the rule judge: (changes, instruction) items scored per second.

Items are synthetic reference instructions and four perturbations of each (left/right swapped, up/down
swapped, secondary change dropped, a vague word and a fabricated object added), so clean and faulty
instructions are both timed; without the generator a hand-written set is cycled instead.

Run: python benchmarks/bench_rule_judge.py
"""
from __future__ import annotations

import re
import time

from editcaption.world.rule_judge import RuleJudge
from editcaption.records import make_change

N_ITEMS, GOAL = 5000, 5000.0
_SWAP_LR = re.compile(r"\b(left|right)\b")
_SWAP_UD = re.compile(r"\b(up|down)\b")
_SIDE = re.compile(r"(, and also |\. Also, |\. Additionally, ).*$")

HAND_WRITTEN = [
    ([make_change("move", "red star", "position", "", "", "right")], "Move the red star to the right."),
    ([make_change("mirror", "image", "orientation", "", "", "horizontal")], "Move the circle to the right."),
    ([make_change("add", "red circle", "color", "", "red", "left")], "Add a circle on the left."),
    ([make_change("color", "dress", "color", "grey", "pink"),
      make_change("style", "dress", "strap", "wide", "spaghetti"),
      make_change("resize", "dress", "length", "midi", "mini", "shorter"),
      make_change("replace", "necklace", "necklace", "gold necklace", "silver necklace", primary=False)],
     "Change the dress to pink and shorten it; replace the necklace with a silver one."),
    ([make_change("zoom", "camera", "zoom", "", "", "in"),
      make_change("tone", "image", "brightness", "", "darker", "darker", primary=False)],
     "Zoom in slightly on the center of the image."),
]


def _variants(changes: list, text: str) -> list[tuple[list, str]]:
    swap = {"left": "right", "right": "left", "up": "down", "down": "up"}
    return [(changes, text),
            (changes, _SWAP_LR.sub(lambda m: swap[m.group()], text)),
            (changes, _SWAP_UD.sub(lambda m: swap[m.group()], text)),
            (changes, _SIDE.sub(".", text)),
            (changes, text.rstrip(".") + ", slightly, and add a green hat.")]


def build_items(n: int = N_ITEMS) -> tuple[list[tuple[list, str]], str]:
    """n (changes, instruction) items and where they came from."""
    try:
        from editcaption.world.synthetic import generate_pairs
    except ImportError:
        items, source = HAND_WRITTEN, "hand-written"
    else:
        rows = generate_pairs(n // 5 + 1, seed=0, progress=False).select_columns(["instruction", "changes"]).to_list()
        items = [v for r in rows for v in _variants(r["changes"], r["instruction"])]
        source = "synthetic"
    return [items[i % len(items)] for i in range(n)], source


def run(n: int = N_ITEMS) -> dict:
    """Score n items once (after one warm-up pass over 200); returns instructions/s."""
    items, source = build_items(n)
    judge = RuleJudge()
    for changes, text in items[:200]:
        judge.score(changes, text)
    start = time.perf_counter()
    composites = [judge.score(changes, text)["composite"] for changes, text in items]
    seconds = time.perf_counter() - start
    result = {"n_items": n, "source": source, "seconds": seconds, "instructions_per_s": n / seconds,
              "goal_instructions_per_s": GOAL, "mean_composite": sum(composites) / n}
    print(f"rule judge instructions/s: {result['instructions_per_s']:.0f} (goal >= {GOAL:.0f})")
    return result


if __name__ == "__main__":
    run()
