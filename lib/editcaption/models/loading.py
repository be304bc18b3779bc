"""Load a vision-language model and its processor: the tiny Qwen3-VL and Qwen3-VL-32B take the same call."""
from __future__ import annotations

from pathlib import Path

from editcaption.models.tiny import build_tiny_model
from editcaption.paths import model_source


def load_model_and_processor(path_or_name: str | Path, *, dtype="auto", device=None):
    """`AutoProcessor` + `AutoModelForImageTextToText` from a checkpoint folder or hub id; returns (model, processor).

    `device` goes to `device_map`: None (CPU), "cuda", "cuda:0", "auto" (spread over the visible GPUs), ...
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = model_source(path_or_name)
    processor = AutoProcessor.from_pretrained(source)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, device_map=device)
    return model.eval(), processor


def resolve_base_model(model_name_or_path: str, tiny_preset: str, out_dir: str | Path, *, seed: int = 0) -> str:
    """The checkpoint a stage starts from: `model_name_or_path` when set (a folder or hub id, e.g.
    Qwen/Qwen3-VL-32B-Instruct), else a tiny Qwen3-VL of `tiny_preset` built once into `out_dir`."""
    if model_name_or_path:
        return model_source(model_name_or_path)
    import json

    out_dir = Path(out_dir)
    marker = out_dir / "editcaption_tiny.json"
    if marker.exists():
        built = json.loads(marker.read_text())
        if built.get("preset") == tiny_preset and built.get("seed") == seed:
            return str(out_dir)
    return str(build_tiny_model(tiny_preset, out_dir, seed=seed))
