"""The instruction-generation prompt shared by every caption backend and by training.

Every model (the tiny Qwen3-VL, Qwen3-VL-32B, an HTTP judge-captioner) gets the same input: the source
image, the target image, then `INSTRUCTION_PROMPT`. SFT and HAE-DPO train on exactly this prompt, so a
change of wording is a change of `PROMPT_VERSION`.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

PROMPT_VERSION = "editcaption-instruction-v1"

INSTRUCTION_PROMPT = (
    "Image 1 is the source image and Image 2 is the target image. "
    "Write one precise editing instruction that turns Image 1 into Image 2. "
    "State every direction explicitly from the viewer's perspective (left, right, up, down). "
    "Describe a change of viewpoint or camera (mirror, rotation, zoom) as such, not as moved objects. "
    "Name the colours, materials and sizes involved. "
    "Do not use vague words such as 'adjust', 'modify' or 'some'. "
    "Answer with the instruction only."
)


def build_messages(source_image: Any, target_image: Any, prompt: str = INSTRUCTION_PROMPT) -> list[dict]:
    """One user turn: the source image, the target image, then the prompt (transformers multimodal format)."""
    return [
        {
            "role": "user",
            "content": [
                {"type": "image", "image": source_image},
                {"type": "image", "image": target_image},
                {"type": "text", "text": prompt},
            ],
        }
    ]


def build_sft_example(source_image: Any, target_image: Any, instruction: str, prompt: str = INSTRUCTION_PROMPT) -> dict:
    """A conversational prompt-completion row for TRL's SFTTrainer/DPOTrainer on vision data.

    The prompt holds image placeholders (`{"type": "image"}`); TRL fills them from `images` in order.
    """
    return {
        "images": [source_image, target_image],
        "prompt": [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "image"}, {"type": "text", "text": prompt}],
            }
        ],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": instruction}]}],
    }


def generate_instructions(
    model,
    processor,
    pairs_of_images: Iterable[Sequence[Any]],
    *,
    max_new_tokens: int = 64,
    batch_size: int = 8,
    do_sample: bool = False,
    prompt: str = INSTRUCTION_PROMPT,
) -> list[str]:
    """Batched generation (left padding): one decoded instruction per (source, target) pair."""
    import torch

    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = [tuple(pair) for pair in pairs_of_images]
    for index, pair in enumerate(pairs):
        if len(pair) != 2:
            raise ValueError(f"pairs_of_images[{index}] has {len(pair)} images; expected (source, target)")
    device = next(model.parameters()).device
    outputs: list[str] = []
    for start in range(0, len(pairs), batch_size):
        conversations = [build_messages(src, tgt, prompt) for src, tgt in pairs[start : start + batch_size]]
        inputs = processor.apply_chat_template(
            conversations,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            return_tensors="pt",
            processor_kwargs={"padding": True, "padding_side": "left"},
        ).to(device)
        with torch.no_grad():
            generated = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=do_sample)
        new_tokens = generated[:, inputs["input_ids"].shape[1] :]
        texts = processor.batch_decode(new_tokens, skip_special_tokens=True, clean_up_tokenization_spaces=False)
        outputs.extend(text.strip() for text in texts)
    return outputs
