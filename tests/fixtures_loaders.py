"""Small parquet fixtures in the public schemas of HQ-Edit, ByteMorph-Bench and MagicBrush.

Images are tiny PNG/JPEG bytes made with PIL, each with its own colour and size so a test can tell
which image ended up where. `write_hub_parquet` writes what a hub download holds (image columns as
`datasets.Image`, i.e. {"bytes", "path"} structs with the `datasets` schema metadata);
`write_plain_parquet` writes plain pyarrow columns (raw bytes, as in the HQ-Edit demo parquet).
"""
from __future__ import annotations

import io
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image


def image_bytes(size: tuple[int, int], color: tuple[int, ...], mode: str = "RGB", fmt: str = "PNG") -> bytes:
    """A one-colour image encoded as `fmt`."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, format=fmt)
    return buffer.getvalue()


def _image(size, color, fmt="PNG"):
    return {"bytes": image_bytes(size, color, fmt=fmt), "path": None}


HQ_EDIT_ROWS = [
    {
        "input": f"A {color} vase on a wooden table.",
        "input_image": _image((16 + i, 12), (40 * i, 10, 10)),
        "edit": f"Turn the {color} vase into a glass bottle.",
        "inverse_edit": f"Turn the glass bottle into a {color} vase.",
        "output": "A glass bottle on a wooden table.",
        "output_image": _image((16 + i, 12), (10, 40 * i, 10), fmt="JPEG"),
    }
    for i, color in enumerate(("red", "blue", "green", "yellow", "white", "black"))
]
HQ_EDIT_FEATURES = datasets.Features({
    "input": datasets.Value("string"), "input_image": datasets.Image(), "edit": datasets.Value("string"),
    "inverse_edit": datasets.Value("string"), "output": datasets.Value("string"),
    "output_image": datasets.Image(),
})

# One row per ByteMorph-Bench category; edit_type spelled like the benchmark's demo folders.
BM_BENCH_TYPES = ("0_camera_zoom", "1_camera_motion", "2_object_motion", "3_human_motion", "4_interaction")
BM_BENCH_ROWS = [
    {
        "edit_type": edit_type,
        "image_id": f"{i:05d}",
        "src_img": _image((20, 10 + i), (200, 20 * i, 0)),
        "tgt_img": _image((20, 10 + i), (0, 20 * i, 200)),
        "edit_prompt": f"Prompt {i}: the camera moves closer.",
        "edit_prompt_rewrite_instruction": "" if i == 4 else f"Rewrite {i}: move the camera closer to the dog.",
        "src_img_caption": f"Source caption {i}.",
        "tgt_img_caption": f"Target caption {i}.",
    }
    for i, edit_type in enumerate(BM_BENCH_TYPES)
]
BM_BENCH_FEATURES = datasets.Features({
    "edit_type": datasets.Value("string"), "image_id": datasets.Value("string"), "src_img": datasets.Image(),
    "tgt_img": datasets.Image(), "edit_prompt": datasets.Value("string"),
    "edit_prompt_rewrite_instruction": datasets.Value("string"), "src_img_caption": datasets.Value("string"),
    "tgt_img_caption": datasets.Value("string"),
})


def magicbrush_rows(split: str) -> list[dict]:
    """Two images with two turns each; the split name goes into the instruction."""
    return [
        {
            "img_id": img_id,
            "turn_index": turn,
            "source_img": _image((12, 12), (turn * 50, 0, 0)),
            "mask_img": _image((12, 12), (255, 255, 255)),
            "instruction": f"[{split}] put a hat on the dog (turn {turn})",
            "target_img": _image((12, 12), (0, turn * 50, 0)),
        }
        for img_id in ("242679", "327726")
        for turn in (1, 2)
    ]


MAGICBRUSH_FEATURES = datasets.Features({
    "img_id": datasets.Value("string"), "turn_index": datasets.Value("int32"), "source_img": datasets.Image(),
    "mask_img": datasets.Image(), "instruction": datasets.Value("string"), "target_img": datasets.Image(),
})


def write_hub_parquet(path: Path, rows: list[dict], features: datasets.Features) -> Path:
    """Rows written the way hub parquet shards are (image columns as `datasets.Image`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(path))
    return path


def write_plain_parquet(path: Path, columns: dict[str, list]) -> Path:
    """Columns written with plain pyarrow types (no `datasets` metadata)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path
