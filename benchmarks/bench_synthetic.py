"""Throughput of the synthetic pair generator: rows (scenes drawn, PNG-encoded, Arrow table built) and the write.

Run: python benchmarks/bench_synthetic.py
"""
from __future__ import annotations

import tempfile
import time

import datasets

from editcaption.world.synthetic import generate_pairs, write_pairs

datasets.disable_progress_bars()

N_PAIRS, SIZE, LAYOUT, GOAL = 2000, 128, "grid", 1000.0


def run(n: int = N_PAIRS, size: int = SIZE, layout: str = LAYOUT) -> dict:
    """Generate n pairs, then write them; returns pairs/s of both steps."""
    start = time.perf_counter()
    ds = generate_pairs(n, seed=0, size=size, layout=layout, progress=False)
    generate_s = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        write_pairs(ds, out)
        write_s = time.perf_counter() - start
    r = {"n_pairs": n, "size": size, "layout": layout, "generate_s": generate_s, "write_s": write_s,
         "pairs_per_s": n / generate_s, "write_pairs_per_s": n / write_s, "goal_pairs_per_s": GOAL}
    print(f"synthetic pairs/s ({size} px, {layout}): {r['pairs_per_s']:.1f} (goal >= {GOAL:.0f}); "
          f"write: {r['write_pairs_per_s']:.1f} pairs/s")
    return r


if __name__ == "__main__":
    run()
