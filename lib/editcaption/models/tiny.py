"""The tiny Qwen3-VL factory: a randomly initialised Qwen3-VL of the real architecture, built locally.

`build_tiny_model` writes a folder laid out like a hub checkpoint (config, safetensors weights,
generation config, Qwen2 tokenizer with the Qwen special tokens, the Qwen3-VL chat template and
processor), so tests and CPU runs load it with the same `from_pretrained` calls as Qwen3-VL-32B.
The tokenizer is a byte-level BPE trained here on the synthetic world's words; nothing is downloaded.
"""
from __future__ import annotations

import itertools
import json
from importlib import resources
from pathlib import Path

from editcaption import vocab
from editcaption.prompts import INSTRUCTION_PROMPT

# Plain config values per preset (a later issue may tune them). `text`/`vision` go into the
# Qwen3-VL sub-configs; `moe` replaces the text MLPs when `moe=True` (like Qwen3-VL-235B-A22B).
PRESETS: dict[str, dict] = {
    "smoke": {
        "tokenizer_vocab_size": 1024,
        "text": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 4096,
            "rope_theta": 5_000_000.0,
            "mrope_section": [4, 2, 2],  # sums to head_dim / 2 (Qwen3-VL: [24, 20, 20] for 128)
        },
        "vision": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "depth": 2,
            "num_heads": 2,
            "num_position_embeddings": 64,  # an 8x8 grid, interpolated to the image's patch grid
            "deepstack_visual_indexes": [0],
        },
        "moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32},
    },
    "demo": {
        "tokenizer_vocab_size": 1024,
        "text": {
            "hidden_size": 128,
            "intermediate_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 32,
            "max_position_embeddings": 4096,
            "rope_theta": 10_000.0,  # lowered from Qwen's 5e6: helps the tiny model ground colours
            "mrope_section": [6, 5, 5],
        },
        "vision": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "depth": 2,
            "num_heads": 4,
            "num_position_embeddings": 256,
            "deepstack_visual_indexes": [0],
        },
        "moe": {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 64},
    },
    # Qwen3-VL-2B's dimensions (its hub config), random weights: the GPU check's model (benchmarks/gpu_check.py).
    # The tokenizer stays the small local one; the embedding and LM head get Qwen's 151936 rows.
    "qwen3vl-2b-shape": {
        "tokenizer_vocab_size": 1024,
        "max_pixels": 1024 * 1024,  # 1024 vision tokens per image (the paper's max sequence length is 8192)
        "text": {
            "vocab_size": 151936,
            "hidden_size": 2048,
            "intermediate_size": 6144,
            "num_hidden_layers": 28,
            "num_attention_heads": 16,
            "num_key_value_heads": 8,
            "head_dim": 128,
            "max_position_embeddings": 32768,
            "rope_theta": 5_000_000.0,
            "mrope_section": [24, 20, 20],
            "tie_word_embeddings": True,
        },
        "vision": {
            "hidden_size": 1024,
            "intermediate_size": 4096,
            "depth": 24,
            "num_heads": 16,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [5, 11, 17],
        },
        "moe": {"num_experts": 128, "num_experts_per_tok": 8, "moe_intermediate_size": 768},
    },
}

# Qwen3-VL image geometry: 16 px patches, 2x2 merge -> one vision token per 32x32 px.
PATCH_SIZE = 16
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
MIN_PIXELS = 64 * 64  # 4 vision tokens
MAX_PIXELS = 256 * 256  # 64 vision tokens: larger images are resized down to this budget
MAX_IMAGE_TOKENS = MAX_PIXELS // (PATCH_SIZE * MERGE_SIZE) ** 2

# The tokens Qwen3-VL's tokenizer adds after its BPE vocabulary, in Qwen's id order, with their
# "special" flag (special tokens are dropped by decode(skip_special_tokens=True)).
QWEN_ADDED_TOKENS: tuple[tuple[str, bool], ...] = (
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)

INFO_FILE = "editcaption_tiny.json"


def default_corpus() -> list[str]:
    """Instruction-like sentences over the synthetic vocabulary, plus the prompt and chat role words."""
    colors, shapes, backgrounds = list(vocab.COLORS), list(vocab.SHAPES), list(vocab.BACKGROUNDS)
    directions = ("left", "right", "up", "down")
    lines = [INSTRUCTION_PROMPT, "system", "user", "assistant", "You are a helpful assistant."]
    for color, shape in itertools.product(colors, shapes):
        lines += [
            f"Add a {color} {shape} on the {directions[len(shape) % 4]}.",
            f"Remove the {color} {shape}.",
            f"Make the {color} {shape} larger.",
            f"Make the {color} {shape} smaller.",
        ]
        lines += [f"Move the {color} {shape} to the {d}." for d in directions]
        lines += [f"Give the {color} {shape} a {texture} texture." for texture in vocab.TEXTURES]
        lines += [f"Change the {color} {shape} to {other}." for other in colors if other != color]
        lines += [f"Replace the {color} {shape} with a {color} {other}." for other in shapes if other != shape]
    lines += [f"Change the background from {a} to {b}." for a, b in itertools.permutations(backgrounds, 2)]
    lines += [f"Render the image in a {style} style." for style in vocab.STYLES]
    lines += [f"Change the text on the sign from {a} to {b}." for a, b in itertools.permutations(vocab.SIGN_WORDS, 2)]
    lines += [f"Rotate the image 90 degrees {d}." for d in ("clockwise", "counterclockwise")]
    lines += [f"Flip the whole image {d}." for d in ("horizontally", "vertically")]
    lines += ["Zoom in on the scene.", "Zoom out of the scene.", "Make the image brighter.", "Make the image darker."]
    lines += [f"Turn the arrow to point {d}." for d in directions]
    lines += [f"{word} {' '.join(alternatives)}" for word, alternatives in vocab.SYNONYMS.items()]
    return lines


def _train_tokenizer(corpus: list[str], vocab_size: int, model_max_length: int):
    """Byte-level BPE with Qwen2's normaliser and pre-tokeniser, then Qwen's added tokens after it."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers, trainers
    from tokenizers.models import BPE
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX, Qwen2Tokenizer

    bpe = Tokenizer(BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    bpe.train_from_iterator(corpus, trainer)
    model = json.loads(bpe.to_str())["model"]
    base_vocab = model["vocab"]
    added = {
        len(base_vocab) + i: AddedToken(token, special=special, normalized=False)
        for i, (token, special) in enumerate(QWEN_ADDED_TOKENS)
    }
    return Qwen2Tokenizer(
        vocab=base_vocab,
        merges=[tuple(merge) for merge in model["merges"]],
        unk_token=None,
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        added_tokens_decoder=added,
        model_max_length=model_max_length,
        errors="replace",
        split_special_tokens=False,
        clean_up_tokenization_spaces=False,
    )


def qwen3_vl_chat_template() -> str:
    """The Qwen3-VL chat template as TRL ships it (TRL recognises it and swaps in its training variant)."""
    return (resources.files("trl") / "chat_templates" / "qwen3_vl.jinja").read_text(encoding="utf-8")


def _build_processor(tokenizer, max_pixels: int = MAX_PIXELS):
    from transformers import Qwen2VLImageProcessor, Qwen3VLProcessor, Qwen3VLVideoProcessor

    geometry = {"patch_size": PATCH_SIZE, "merge_size": MERGE_SIZE, "temporal_patch_size": TEMPORAL_PATCH_SIZE}
    norm = {"image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}  # Qwen3-VL's normalisation
    size = {"shortest_edge": MIN_PIXELS, "longest_edge": max_pixels}
    image_processor = Qwen2VLImageProcessor(size=size, **geometry, **norm)
    video_processor = Qwen3VLVideoProcessor(size={"shortest_edge": MIN_PIXELS, "longest_edge": 16 * max_pixels}, **geometry, **norm)
    return Qwen3VLProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=qwen3_vl_chat_template(),
    )


def _build_config(preset: dict, tokenizer, moe: bool):
    from transformers import Qwen3VLConfig, Qwen3VLMoeConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN_ADDED_TOKENS}
    text = dict(preset["text"])
    vocab_size = max(len(tokenizer), text.pop("vocab_size", 0))  # a real-shaped preset keeps its embedding rows
    tie = text.pop("tie_word_embeddings", False)
    rope = {
        "rope_type": "default",
        "rope_theta": text.pop("rope_theta"),
        "mrope_section": text.pop("mrope_section"),
        "mrope_interleaved": True,
    }
    text_config = {
        **text,
        "vocab_size": vocab_size,
        "rope_parameters": rope,
        "pad_token_id": ids["<|endoftext|>"],
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "tie_word_embeddings": tie,
        "dtype": "float32",
    }
    if moe:
        text_config.update(preset["moe"], decoder_sparse_step=1)
    vision_config = {
        **preset["vision"],
        "patch_size": PATCH_SIZE,
        "spatial_merge_size": MERGE_SIZE,
        "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        "out_hidden_size": text["hidden_size"],
    }
    config_class = Qwen3VLMoeConfig if moe else Qwen3VLConfig
    return config_class(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=tie,
        dtype="float32",
    )


def tiny_model_parts(preset: str, *, moe: bool = False, corpus: list[str] | None = None):
    """(processor, config) of a preset, nothing written: the model is `model_class._from_config(config)`."""
    if preset not in PRESETS:
        raise ValueError(f"unknown tiny-model preset {preset!r}; expected one of {sorted(PRESETS)}")
    spec = PRESETS[preset]
    tokenizer = _train_tokenizer(
        list(corpus) if corpus is not None else default_corpus(),
        spec["tokenizer_vocab_size"],
        spec["text"]["max_position_embeddings"],
    )
    return _build_processor(tokenizer, spec.get("max_pixels", MAX_PIXELS)), _build_config(spec, tokenizer, moe)


def build_tiny_model(
    preset: str, out_dir: str | Path, *, moe: bool = False, seed: int = 0, corpus: list[str] | None = None
) -> Path:
    """Build, save and return a tiny random Qwen3-VL (or Qwen3-VL-MoE) checkpoint folder."""
    import torch
    from transformers import GenerationConfig, Qwen3VLForConditionalGeneration, Qwen3VLMoeForConditionalGeneration

    processor, config = tiny_model_parts(preset, moe=moe, corpus=corpus)
    tokenizer = processor.tokenizer
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    model_class = Qwen3VLMoeForConditionalGeneration if moe else Qwen3VLForConditionalGeneration
    torch.manual_seed(seed)
    model = model_class(config).to(torch.float32).eval()
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.pad_token_id,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=[tokenizer.eos_token_id, tokenizer.pad_token_id],
        do_sample=False,
    )
    model.save_pretrained(out)
    processor.save_pretrained(out)

    info = {
        "preset": preset,
        "moe": moe,
        "seed": seed,
        "architecture": model_class.__name__,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "vocab_size": len(tokenizer),
        "max_image_tokens": PRESETS[preset].get("max_pixels", MAX_PIXELS) // (PATCH_SIZE * MERGE_SIZE) ** 2,
    }
    (out / INFO_FILE).write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    return out
