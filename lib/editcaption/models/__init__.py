"""Model loading and the tiny Qwen3-VL factory."""
from editcaption.models.loading import load_model_and_processor
from editcaption.models.tiny import MAX_IMAGE_TOKENS, PRESETS, build_tiny_model

__all__ = ["MAX_IMAGE_TOKENS", "PRESETS", "build_tiny_model", "load_model_and_processor"]
