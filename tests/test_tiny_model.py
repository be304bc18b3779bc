"""The tiny Qwen3-VL factory: build, load through the Auto classes, token counts, determinism, errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from editcaption.models import MAX_IMAGE_TOKENS, PRESETS, build_tiny_model, load_model_and_processor
from editcaption.models.tiny import INFO_FILE, QWEN_ADDED_TOKENS, qwen3_vl_chat_template
from editcaption.prompts import build_messages

from real_data import require_real_pairs


@pytest.fixture(scope="module")
def smoke_dir(tmp_path_factory) -> Path:
    return build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke", seed=0)


@pytest.fixture(scope="module")
def smoke(smoke_dir):
    return load_model_and_processor(smoke_dir)


def _chat_inputs(processor, source, target):
    return processor.apply_chat_template(
        [build_messages(source, target)], add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )


def test_smoke_loads_as_qwen3_vl_and_generates(smoke):
    model, processor = smoke
    assert type(model).__name__ == "Qwen3VLForConditionalGeneration"
    assert type(processor).__name__ == "Qwen3VLProcessor"
    assert 0.2e6 < model.num_parameters() < 0.5e6
    source, target = Image.new("RGB", (64, 64), (220, 40, 40)), Image.new("RGB", (64, 64), (40, 80, 220))
    inputs = _chat_inputs(processor, source, target)
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == 2 * 4
    generated = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    text = processor.decode(generated[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    assert isinstance(text, str)
    assert generated.shape[1] > inputs["input_ids"].shape[1]


def test_vision_tokens_per_image_size(smoke):
    model, processor = smoke
    inputs = _chat_inputs(processor, Image.new("RGB", (64, 64)), Image.new("RGB", (128, 128)))
    ids = inputs["input_ids"][0].tolist()
    start, end = model.config.vision_start_token_id, model.config.vision_end_token_id
    spans = [ids[i + 1 : ids.index(end, i)] for i, token in enumerate(ids) if token == start]
    assert [len(span) for span in spans] == [4, 16]
    assert all(token == model.config.image_token_id for span in spans for token in span)
    assert inputs["image_grid_thw"].tolist() == [[1, 4, 4], [1, 8, 8]]


def test_config_ids_match_tokenizer(smoke, smoke_dir):
    model, processor = smoke
    tokenizer, config = processor.tokenizer, model.config
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token, _ in QWEN_ADDED_TOKENS}
    assert config.image_token_id == ids["<|image_pad|>"] == processor.image_token_id
    assert config.video_token_id == ids["<|video_pad|>"]
    assert config.vision_start_token_id == ids["<|vision_start|>"]
    assert config.vision_end_token_id == ids["<|vision_end|>"]
    assert config.text_config.vocab_size == len(tokenizer)
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token == "<|endoftext|>"
    assert set(model.generation_config.eos_token_id) == {ids["<|im_end|>"], ids["<|endoftext|>"]}
    assert model.generation_config.pad_token_id == ids["<|endoftext|>"]
    assert 512 < len(tokenizer) < 2048
    assert processor.chat_template == qwen3_vl_chat_template()
    info = json.loads((smoke_dir / INFO_FILE).read_text())
    assert (info["preset"], info["seed"], info["moe"]) == ("smoke", 0, False)


def test_tokenizer_round_trip_and_special_tokens(smoke):
    tokenizer = smoke[1].tokenizer
    text = "Move the red circle to the left."
    ids = tokenizer("<|im_start|>assistant\n" + text + "<|im_end|>")["input_ids"]
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|im_start|>")
    assert ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(ids, skip_special_tokens=True) == "assistant\n" + text
    assert len(tokenizer(text)["input_ids"]) <= 9  # trained on this vocabulary: whole words


def test_moe_builds_loads_and_runs(tmp_path):
    from transformers import Qwen3VLMoeForConditionalGeneration

    model, processor = load_model_and_processor(build_tiny_model("smoke", tmp_path / "moe", moe=True))
    assert isinstance(model, Qwen3VLMoeForConditionalGeneration)
    assert model.config.text_config.num_experts == PRESETS["smoke"]["moe"]["num_experts"]
    assert model.config.text_config.num_experts_per_tok == 2
    inputs = _chat_inputs(processor, Image.new("RGB", (64, 64), "red"), Image.new("RGB", (64, 64), "blue"))
    with torch.no_grad():
        logits = model(**inputs).logits
    assert logits.shape == (1, inputs["input_ids"].shape[1], len(processor.tokenizer))
    assert torch.isfinite(logits).all()


def test_same_seed_same_weights_other_seed_different(smoke_dir, tmp_path):
    weights = (smoke_dir / "model.safetensors").read_bytes()
    again = build_tiny_model("smoke", tmp_path / "again", seed=0)
    other = build_tiny_model("smoke", tmp_path / "other", seed=1)
    assert (again / "model.safetensors").read_bytes() == weights
    assert (again / "tokenizer.json").read_bytes() == (smoke_dir / "tokenizer.json").read_bytes()
    assert (other / "model.safetensors").read_bytes() != weights


def test_large_real_image_fits_token_budget(smoke):
    model, processor = smoke
    sources = sorted(require_real_pairs().glob("*/source.*"))
    image = max((Image.open(path) for path in sources), key=lambda im: im.width * im.height).convert("RGB")
    assert image.width * image.height >= 512 * 512
    inputs = _chat_inputs(processor, image, image)
    per_image = [t * h * w // 4 for t, h, w in inputs["image_grid_thw"].tolist()]
    assert all(16 < n <= MAX_IMAGE_TOKENS for n in per_image)
    assert (inputs["input_ids"] == model.config.image_token_id).sum().item() == sum(per_image)
    with torch.no_grad():
        logits = model(**inputs).logits
    assert torch.isfinite(logits).all()


def test_demo_preset_builds_with_its_config(tmp_path):
    model, processor = load_model_and_processor(build_tiny_model("demo", tmp_path / "demo"))
    text = model.config.text_config
    assert (text.hidden_size, text.num_hidden_layers, text.rope_parameters["rope_theta"]) == (128, 4, 1e4)
    assert (model.config.vision_config.hidden_size, model.config.vision_config.depth) == (64, 2)
    inputs = _chat_inputs(processor, Image.new("RGB", (64, 64)), Image.new("RGB", (128, 128)))
    with torch.no_grad():
        assert torch.isfinite(model(**inputs).logits).all()


def test_unknown_preset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="huge"):
        build_tiny_model("huge", tmp_path / "x")


def test_missing_folder_error_names_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        load_model_and_processor(missing)


def test_folder_without_config_error_names_path(tmp_path):
    empty = tmp_path / "empty-model"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty-model.*config.json"):
        load_model_and_processor(empty)


def test_hub_id_passes_through_unchecked():
    from editcaption.paths import model_source

    assert model_source("Qwen/Qwen3-VL-32B-Instruct") == "Qwen/Qwen3-VL-32B-Instruct"


def test_corpus_override_changes_the_tokenizer(smoke_dir, tmp_path):
    from transformers import AutoTokenizer

    built = build_tiny_model("smoke", tmp_path / "custom", corpus=["a zebra walks past a horse"] * 20)
    tokenizer = AutoTokenizer.from_pretrained(built)
    assert len(tokenizer) < len(AutoTokenizer.from_pretrained(smoke_dir))
    assert tokenizer.tokenize(" zebra") == ["Ġzebra"]
    assert json.loads((built / "config.json").read_text())["text_config"]["vocab_size"] == len(tokenizer)
