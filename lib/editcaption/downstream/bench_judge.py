"""The benchmarks' judge (GPT-4.1 in the paper): one request per item, its text then its images, as GEdit-Bench's
and ImgEdit-Bench's scorers send them, and the image encodings they use. Calls go through
`generation.OpenAIBackend` (retries, backoff, resumable JSONL cache; the key only from an environment variable).
"""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from editcaption.downstream.export import image_file_bytes
from editcaption.generation import OpenAIBackend, Pair

# ------------------------------------------------------------------------------------------------ images

def png_bytes(value: Any, *, row: Any, field: str) -> bytes:
    """The image as PNG bytes (PNG input is kept as is)."""

    data, ext = image_file_bytes(value, row=row, field=field)
    if ext == ".png":
        return data
    with Image.open(io.BytesIO(data)) as image:
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="PNG")
        return buffer.getvalue()


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as image:
        return image.convert("RGB")


def jpeg_url(image: Image.Image) -> str:
    """As viescore's encode_pil_image: RGB, JPEG (PIL's default quality), base64."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG")
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def file_url(path: str | Path) -> str:
    """As ImgEdit's basic_bench.py: the file's bytes, base64, labelled image/png."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


class BenchmarkJudge(OpenAIBackend):
    """OpenAIBackend sending, per request, one text and then its images (data URLs), as the benchmarks'
    scorers do. Retries, backoff, the key from the environment and the JSONL cache are OpenAIBackend's."""

    name = "openai-benchmark"

    def __init__(self, model: str = "gpt-4.1", base_url: str = "https://api.openai.com/v1", *,
                 api_key_env: str = "OPENAI_API_KEY", max_new_tokens: int = 1400, temperature: float | None = 0.0,
                 **kwargs):
        super().__init__(model, base_url, api_key_env=api_key_env, max_new_tokens=max_new_tokens,
                         temperature=temperature, **kwargs)
        self._payloads: dict[str, tuple[str, list[str]]] = {}

    def request_body(self, pair: Pair, prompt: str) -> dict:
        text, urls = self._payloads[pair.id]
        content = [{"type": "text", "text": text}, *({"type": "image_url", "image_url": {"url": u}} for u in urls)]
        body = {"model": self.model, "messages": [{"role": "user", "content": content}], "max_tokens": self.max_new_tokens}
        if self.temperature is not None:
            body["temperature"] = self.temperature
        if self.top_p is not None:
            body["top_p"] = self.top_p
        return {**body, **self.extra_body}

    def ask(self, requests: Sequence[dict], template: str, *, cache_path: str | Path | None = None,
            progress: bool = False) -> dict[str, str]:
        """{id: reply text} for requests [{"id", "text", "images": [data URL, ...]}] ("" where the call failed;
        the reason is in `last_results`). `template` names the prompt version in the cache."""
        self._payloads = {r["id"]: (r["text"], list(r["images"])) for r in requests}
        # the caption machinery wants images per row; the real ones travel in the payload
        rows = [{"id": r["id"], "source_image": _PLACEHOLDER, "target_image": _PLACEHOLDER} for r in requests]
        return {c.id: c.instruction for c in self.caption(rows, template, cache_path=cache_path, progress=progress)}


_PLACEHOLDER = Image.new("RGB", (1, 1))
