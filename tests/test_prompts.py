"""The shared instruction prompt: chat messages, the TRL prompt-completion row, batched generation."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from editcaption.models import build_tiny_model, load_model_and_processor
from editcaption.prompts import (
    INSTRUCTION_PROMPT,
    PROMPT_VERSION,
    build_messages,
    build_sft_example,
    generate_instructions,
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return load_model_and_processor(build_tiny_model("smoke", tmp_path_factory.mktemp("tiny") / "smoke"))


def _noise(size: int, seed: int) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_prompt_states_the_task():
    assert PROMPT_VERSION
    for phrase in ("Image 1", "Image 2", "viewer's perspective", "viewpoint"):
        assert phrase in INSTRUCTION_PROMPT


def test_build_messages_one_user_turn_two_images_then_text():
    source, target = _noise(64, 0), _noise(64, 1)
    messages = build_messages(source, target)
    assert len(messages) == 1 and messages[0]["role"] == "user"
    content = messages[0]["content"]
    assert [part["type"] for part in content] == ["image", "image", "text"]
    assert content[0]["image"] is source and content[1]["image"] is target
    assert content[2]["text"] == INSTRUCTION_PROMPT
    assert build_messages(source, target, prompt="Other.")[0]["content"][2]["text"] == "Other."


def test_sft_example_is_trl_prompt_completion():
    source, target = _noise(64, 0), _noise(64, 1)
    example = build_sft_example(source, target, "Move the red star to the left.")
    assert set(example) == {"images", "prompt", "completion"}
    assert example["images"] == [source, target]
    assert example["prompt"][0]["role"] == "user"
    assert [part["type"] for part in example["prompt"][0]["content"]] == ["image", "image", "text"]
    assert all("image" not in part for part in example["prompt"][0]["content"])  # TRL fills placeholders
    assert example["completion"] == [
        {"role": "assistant", "content": [{"type": "text", "text": "Move the red star to the left."}]}
    ]


def test_trl_collator_trains_on_the_completion_only(tiny):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = tiny
    instructions = ["Move the red star to the left.", "Change the background from white to navy."]
    examples = [
        build_sft_example(_noise(64, 0), _noise(128, 1), instructions[0]),
        build_sft_example(_noise(64, 2), _noise(64, 3), instructions[1]),
    ]
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)(examples)
    assert batch["image_grid_thw"].tolist() == [[1, 4, 4], [1, 8, 8], [1, 4, 4], [1, 4, 4]]
    for row, instruction in enumerate(instructions):
        labelled = batch["labels"][row][batch["labels"][row] != -100]
        assert processor.decode(labelled) == instruction + "<|im_end|>\n"
    loss = model(**batch).loss
    assert loss.isfinite() and loss.item() > 0


def test_generate_batched_left_padding_matches_one_by_one(tiny):
    model, processor = tiny
    pairs = [(_noise(64, 0), _noise(128, 1)), (_noise(64, 2), _noise(64, 3)), (_noise(128, 4), _noise(64, 5))]
    batched = generate_instructions(model, processor, pairs, batch_size=2, max_new_tokens=6)
    single = generate_instructions(model, processor, pairs, batch_size=1, max_new_tokens=6)
    assert len(batched) == len(pairs) and all(isinstance(text, str) for text in batched)
    assert batched == single
    assert not any("<|im_end|>" in text or "<|endoftext|>" in text for text in batched)


def test_generate_rejects_a_pair_without_two_images(tiny):
    model, processor = tiny
    with pytest.raises(ValueError, match=r"pairs_of_images\[0\]"):
        generate_instructions(model, processor, [(_noise(64, 0),)])
