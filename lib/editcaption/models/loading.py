"""Load a vision-language model and its processor: the tiny Qwen3-VL and Qwen3-VL-32B take the same call."""
from __future__ import annotations

import re
from pathlib import Path

# "owner/name" as the hub spells a repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _check_source(path_or_name: str | Path) -> str:
    """A local folder must exist and hold config.json; a hub id passes through unchanged."""
    text = str(path_or_name)
    path = Path(text).expanduser()
    looks_like_hub_id = bool(_HUB_ID.match(text)) and not path.parent.exists()
    if path.exists() or not looks_like_hub_id:
        if not path.is_dir():
            raise FileNotFoundError(f"model folder {path} does not exist")
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"model folder {path} has no config.json; is it a saved checkpoint?")
        return str(path)
    return text


def load_model_and_processor(path_or_name: str | Path, *, dtype="auto", device=None):
    """`AutoProcessor` + `AutoModelForImageTextToText` from a checkpoint folder or hub id; returns (model, processor).

    `device` goes to `device_map`: None (CPU), "cuda", "cuda:0", "auto" (spread over the visible GPUs), ...
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    source = _check_source(path_or_name)
    processor = AutoProcessor.from_pretrained(source)
    model = AutoModelForImageTextToText.from_pretrained(source, dtype=dtype, device_map=device)
    return model.eval(), processor
