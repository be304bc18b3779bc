"""EditCaption: image-editing instruction synthesis with Qwen3-VL (SFT + HAE-DPO)."""

__version__ = "0.1.0"
