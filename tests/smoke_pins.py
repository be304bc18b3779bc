"""The smoke run's numbers, pinned: which metrics of which notebook, with what tolerance, and the command that
records them again (tests/test_smoke_pins.py compares the shared smoke run with tests/smoke_expected.json).

    .venv/bin/python tests/smoke_pins.py            # make the smoke run as the tests do, record its numbers
    .venv/bin/python tests/smoke_pins.py RUN_DIR    # record the numbers of an existing run folder

Tolerances, measured on 2026-12-04 by running the same smoke run with two threads per process and with one
(the tests use one): greedy decodes, and every score read from them, came out identical; training losses and
the reference-model margins moved by at most 2e-7 of their value; table 5's pixel metrics (an editor trained on
each captioner's instructions) by at most 7e-5. A real change is far larger: another DPO seed moves the 4-step
train loss by 7.5e-4 of its value, twice the learning rate by 2.1e-3. So:

- "count": exact (sizes, counts, the chosen budget);
- "decoded": within 1e-9 (scores of generated text: a different greedy decode is a change to look at; on a CPU
  where one flips for a numerical reason, check the diff, then record the numbers again with the command above);
- "training": within 1e-5 of the value (50x the measured noise, 75x under a seed change);
- "pixel": within 5e-4 of the value (7x the measured noise).
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

EXPECTED = Path(__file__).with_name("smoke_expected.json")
SWEEP = {"sweep_learning_rates": "1.0e-4,2.0e-4", "train_seeds": "0,1"}  # what the shared smoke run adds
TOLERANCE = {"count": (0.0, 0.0), "decoded": (0.0, 1e-9), "training": (1e-5, 0.0), "pixel": (5e-4, 0.0)}  # rel, abs

_ALL_P0 = {"subset": "all", "measure": "p0"}
PINS: tuple[tuple[str, tuple, str], ...] = (
    ("00_tiny_world_pretraining", ("tiny_world_base", "accuracy", "color"), "decoded"),
    ("00_tiny_world_pretraining", ("tiny_world_base", "accuracy", "count"), "decoded"),
    ("00_tiny_world_pretraining", ("tiny_world_base", "vision_probe", "color_from_object_token"), "decoded"),
    ("01_dataset_construction", ("funnel", "captioned"), "count"),
    ("01_dataset_construction", ("funnel", "kept by filter"), "count"),
    ("01_dataset_construction", ("n_sft_train",), "count"),
    ("02_sft", ("train", "train_loss"), "training"),
    ("02_sft", ("base", "S"), "decoded"),
    ("02_sft", ("sft", "S"), "decoded"),
    ("02_sft", ("sft_gain", "diff"), "decoded"),
    ("02_sft", ("sft_gain", "p_value"), "decoded"),
    ("03_preference_data", ("counts", "candidate_pairs"), "count"),
    ("03_preference_data", ("counts", "preference_rows"), "count"),
    ("04_hae_dpo", ("budget", "learning_rate"), "count"),
    ("04_hae_dpo", ("train", "dpo", "train_loss"), "training"),
    ("04_hae_dpo", ("train", "hae", "train_loss"), "training"),
    ("04_hae_dpo", ("train", "dpo_seed1", "train_loss"), "training"),
    ("04_hae_dpo", ("train", "hae_seed1", "train_loss"), "training"),
    ("04_hae_dpo", ("margins", "mean", "margin"), "training"),
    ("04_hae_dpo", ("margins", "mean", "h_term"), "training"),
    ("04_hae_dpo", ("margins", "mean", "st_term"), "training"),
    ("04_hae_dpo", ("validation_rates", {"model": "SFT", **_ALL_P0}, "rate"), "decoded"),
    ("04_hae_dpo", ("validation_rates", {"model": "hae", **_ALL_P0}, "rate"), "decoded"),
    ("05_automatic_evaluation", ("results", "synthetic", "base", "rule", "S"), "decoded"),
    ("05_automatic_evaluation", ("results", "synthetic", "sft", "rule", "S"), "decoded"),
    ("05_automatic_evaluation", ("results", "synthetic", "dpo", "rule", "S"), "decoded"),
    ("05_automatic_evaluation", ("results", "synthetic", "hae", "rule", "S"), "decoded"),
    ("06_human_evaluation", ("table2", "SFT", "P0", "value"), "decoded"),
    ("06_human_evaluation", ("table2", "HAE-DPO", "P0", "value"), "decoded"),
    ("06_human_evaluation", ("agreement", "kappa"), "decoded"),
    ("07_downstream_editing", ("results", "base (no SFT)", "PSNR", "value"), "pixel"),
    ("07_downstream_editing", ("results", "SFT", "PSNR", "value"), "pixel"),
    ("07_downstream_editing", ("results", "SFT", "SSIM", "value"), "pixel"),
    ("07_downstream_editing", ("results", "teacher (simulated)", "PSNR", "value"), "pixel"),
    ("07_downstream_editing", ("results", "GT instructions (upper bound)", "PSNR", "value"), "pixel"),
    ("07_downstream_editing", ("results", "identity (no edit)", "SSIM", "value"), "pixel"),
)


def pin_name(stage: str, keys: tuple) -> str:
    """'04_hae_dpo: validation_rates[model=hae,subset=all,measure=p0].rate'."""
    parts = [f"[{','.join(f'{k}={v}' for k, v in key.items())}]" if isinstance(key, dict) else f".{key}" for key in keys]
    return f"{stage}: " + "".join(parts).lstrip(".")


def lookup(metrics: Any, keys: tuple, where: str) -> Any:
    """The value under `keys`; a dict among them picks the one list item whose fields match it."""
    value = metrics
    for key in keys:
        if isinstance(key, dict):
            matches = [item for item in value if all(item.get(k) == v for k, v in key.items())]
            if len(matches) != 1:
                raise KeyError(f"{where}: {len(matches)} list items match {key}")
            value = matches[0]
        else:
            if key not in value:
                raise KeyError(f"{where}: no key {key!r} (keys: {sorted(value)[:12]})")
            value = value[key]
    return value


def extract(run_dir: str | Path) -> dict[str, float]:
    """Pin name -> value, read from the run's metrics.json files."""
    run_dir, values = Path(run_dir), {}
    for stage, keys, _ in PINS:
        metrics = json.loads((run_dir / stage / "metrics.json").read_text(encoding="utf-8"))
        values[pin_name(stage, keys)] = lookup(metrics, keys, pin_name(stage, keys))
    return values


def mismatches(found: dict[str, float], expected: dict[str, float]) -> list[str]:
    """One line per pinned metric outside its tolerance, missing, or not recorded in `expected`."""
    lines = []
    for stage, keys, kind in PINS:
        name = pin_name(stage, keys)
        if name not in expected:
            lines.append(f"{name}: not in {EXPECTED.name} (record the pins again)")
            continue
        want, got = expected[name], found.get(name)
        rel, absolute = TOLERANCE[kind]
        if got is None or not math.isclose(got, want, rel_tol=rel, abs_tol=absolute):
            lines.append(f"{name}: expected {want!r}, got {got!r} ({kind}: rel {rel:g}, abs {absolute:g})")
    return lines


def smoke_profile(folder: Path) -> Path:
    """The smoke profile plus SWEEP as a profile file in `folder` (what tests/conftest.py runs)."""
    import yaml

    from editcaption import config

    profile = folder / "smoke-sweep.yaml"
    profile.write_text(yaml.safe_dump({**config.load_profile("smoke"), **SWEEP}))
    return profile


def main(argv: list[str]) -> int:
    if argv:
        run_dir = Path(argv[0])
    else:
        os.environ.setdefault("OMP_NUM_THREADS", "1")  # as each test worker computes
        from editcaption import runner

        root = Path(tempfile.mkdtemp(prefix="smoke-pins-"))
        runner.run_profile(str(smoke_profile(root)), run_name="smoke", output_root=str(root))
        run_dir = root / "smoke"
    values = extract(run_dir)
    EXPECTED.write_text(json.dumps(values, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    print(f"{len(values)} pinned metrics of {run_dir} written to {EXPECTED}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
