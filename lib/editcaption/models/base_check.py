"""Notebook 00's check of the tiny-world base: take the shipped base (or pre-train one), then ask whether it
sees, against a random model of the same preset as the floor (held-out descriptions of single images, of
one-object images and of image pairs, and the vision-token probes)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from editcaption.models.loading import load_model_and_processor
from editcaption.models.pretrain import ASSET_DIR, evaluate_descriptions, pretrain_tiny_main, vision_probe
from editcaption.models.tiny import build_tiny_model


def base_model(pretrain_steps: int, tiny_preset: str, seed: int, stage_dir: str | Path, **pretrain_options: Any) -> Path:
    """The shipped tiny-world base when `pretrain_steps` is 0, else a base pre-trained here for that many steps
    (`pretrain_tiny_main` with `pretrain_options`, no evaluation of its own: `compare_with_random_init` does it)."""
    if pretrain_steps <= 0:
        return ASSET_DIR
    return pretrain_tiny_main(tiny_preset, pretrain_steps, seed, stage_dir, n_eval=0, **pretrain_options)


def describe_model(path: str | Path, *, n: int, size: int) -> dict[str, Any]:
    """One model's held-out description accuracy (all images, one object, image pairs) and vision probes."""
    model, processor = load_model_and_processor(path)
    result = evaluate_descriptions(model, processor, n=n, size=size)
    result["one_object"] = evaluate_descriptions(model, processor, n=n, size=size, max_objects=1)["accuracy"]
    result["pairs"] = evaluate_descriptions(model, processor, n=n, size=size, max_objects=2, pairs=True)["accuracy"]
    result["vision_probe"] = vision_probe(model, processor, size=size)
    return result


def compare_with_random_init(base_dir: str | Path, tiny_preset: str, random_dir: str | Path, *, seed: int, n: int,
                             size: int) -> dict[str, dict[str, Any]]:
    """{"random init": ..., "tiny-world base": ...} from `describe_model`, each printed as it is measured."""
    models = {"random init": build_tiny_model(tiny_preset, random_dir, seed=seed), "tiny-world base": base_dir}
    results = {}
    for name, path in models.items():
        results[name] = result = describe_model(path, n=n, size=size)
        print(name, "\n  all images:", {k: round(v, 3) for k, v in result["accuracy"].items()},
              "\n  one object:", {k: round(v, 3) for k, v in result["one_object"].items()},
              "\n  image pairs:", {k: round(v, 3) for k, v in result["pairs"].items()},
              "\n  vision probe:", result["vision_probe"])
    return results


def print_examples(result: Mapping[str, Any]) -> None:
    """The first held-out descriptions beside the truth."""
    for reference, said in zip(result["references"], result["examples"]):
        print(f"truth: {reference}\nsaid:  {said}\n")


def stage_metrics(base_dir: str | Path, pretrain_steps: int, results: Mapping[str, Any]) -> dict[str, Any]:
    """What notebook 00 writes to metrics.json."""
    return {"base_model": str(base_dir), "pretrain_steps": pretrain_steps, "random_init": results["random init"],
            "tiny_world_base": results["tiny-world base"]}
