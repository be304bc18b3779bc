"""Batched vs one-at-a-time greedy generation with the transformers path (prompts.generate_instructions) on the
tiny demo model: the same 32 test pairs at batch 16 and at batch 1 (goal: batched >= 4x faster)."""
from __future__ import annotations

import tempfile
import time

N_PAIRS, BATCH, MAX_NEW_TOKENS, GOAL = 32, 16, 24, 4.0


def run(n: int = N_PAIRS, batch_size: int = BATCH) -> dict:
    import torch

    from editcaption.world.synthetic import generate_pairs
    from editcaption.models.loading import load_model_and_processor
    from editcaption.models.tiny import build_tiny_model
    from editcaption.prompts import generate_instructions

    torch.manual_seed(0)
    pairs = generate_pairs(n, seed=5, size=128, progress=False)
    images = list(zip(pairs["source_image"], pairs["target_image"]))
    with tempfile.TemporaryDirectory() as tmp:
        model, processor = load_model_and_processor(build_tiny_model("demo", tmp, seed=0))
        # min_new_tokens: a random model may stop at once; force the same work at both batch sizes
        model.generation_config.min_new_tokens = MAX_NEW_TOKENS
        generate_instructions(model, processor, images[:2], batch_size=2, max_new_tokens=4)  # warm-up
        timings = {}
        for size in (batch_size, 1):
            start = time.perf_counter()
            generate_instructions(model, processor, images, batch_size=size, max_new_tokens=MAX_NEW_TOKENS)
            timings[size] = time.perf_counter() - start
    result = {"n_pairs": n, "max_new_tokens": MAX_NEW_TOKENS, "batched_batch_size": batch_size,
              "batched_pairs_per_s": n / timings[batch_size], "single_pairs_per_s": n / timings[1],
              "speedup": timings[1] / timings[batch_size], "goal_speedup": GOAL}
    print(f"generation pairs/s: batch {batch_size} {result['batched_pairs_per_s']:.1f}, batch 1 "
          f"{result['single_pairs_per_s']:.1f}; speed-up {result['speedup']:.1f}x (goal >= {GOAL:.0f}x)")
    return result


if __name__ == "__main__":
    run()
