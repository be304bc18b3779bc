"""benchmarks/gpu_check.py on CPU with the tiny preset: the GPU check's code path runs in CI and cannot rot."""
import json

import pytest

import gpu_check
from editcaption.models.tiny import tiny_model_parts


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_check")
    code = gpu_check.main(["--preset", "smoke", "--steps", "2", "--warmup", "1", "--batch", "2",
                           "--peak-tflops", "1.0", "--skip", "zero3", "--out", str(out)])
    written = json.loads((out / "smoke-cpu.json").read_text())
    return code, written


def test_every_part_runs_or_says_why_not(report):
    code, written = report
    parts = written["parts"]
    assert code == 0, {name: p.get("error") for name, p in parts.items()}
    assert {name: p["status"] for name, p in parts.items()} == {
        "sft": "ok", "dpo_ratio": "ok", "zero3": "skipped", "vllm": "skipped", "editscore": "skipped"}
    assert "does not import" in parts["vllm"]["reason"]


def test_zero3_part_hands_the_sft_entry_point_a_valid_recipe(tmp_path):
    """The ZeRO-3 part launches `editcaption.train.sft` as test_train_sft's two-process ZeRO-3 test does (about a
    minute on CPU, so it is skipped above); here its recipe must build the stage's configs."""
    from editcaption.train.recipe import build_stage_args

    args, model_args = build_stage_args("sft", gpu_check.zero3_params(tmp_path / "m", tmp_path / "p", tmp_path / "o", 2))
    assert (args.max_steps, args.global_batch_size, args.gradient_accumulation_steps, args.bf16) == (1, 2, 1, False)
    assert model_args.model_name_or_path == str(tmp_path / "m")


def test_sft_figures_and_mfu_arithmetic(report):
    sft = report[1]["parts"]["sft"]
    k = sft["kernels"]["sdpa"]
    assert set(sft["kernels"]) == {"sdpa"}  # flash-attn and Liger are tried on CUDA only
    assert k["tokens_per_s"] == pytest.approx(sft["tokens_per_sample"] * 2 / k["s_per_step"])
    assert k["achieved_tflops"] == pytest.approx(sft["flops_per_token_counted"] * k["tokens_per_s"] / 1e12)
    assert k["mfu"] == pytest.approx(k["achieved_tflops"] / 1.0)  # --peak-tflops 1.0
    # counted FLOPs include the backward (~2x the forward) and attention: a forward-only count would be ~1/3 of 6N
    assert 0.8 < sft["flops_per_token_counted"] / sft["flops_per_token_6N"] < 3.0


def test_hae_over_dpo_ratio_is_measured(report):
    dpo = report[1]["parts"]["dpo_ratio"]
    assert dpo["ratio"] == pytest.approx(dpo["hae_s_per_step"] / dpo["dpo_s_per_step"])
    assert 0.5 < dpo["ratio"] < 2.0 and dpo["steps"] == 2 and dpo["batch"] == 2


def test_peak_lookup_and_bad_skip():
    assert gpu_check.peak_tflops("NVIDIA H200", None) == 989.4
    assert gpu_check.peak_tflops("NVIDIA A100-SXM4-80GB", None) == 312.0
    assert gpu_check.peak_tflops("Some GPU", None) is None and gpu_check.peak_tflops("Some GPU", 50.0) == 50.0
    with pytest.raises(SystemExit):
        gpu_check.parse_args(["--skip", "sft,nonsense"])


def test_the_2b_preset_has_qwen3_vl_2b_dimensions():
    """The GPU check's model: about 2.1B parameters (Qwen3-VL-2B: 2.13B), built from the config alone."""
    import torch
    from transformers import Qwen3VLForConditionalGeneration

    processor, config = tiny_model_parts("qwen3vl-2b-shape")
    with torch.device("meta"):
        model = Qwen3VLForConditionalGeneration._from_config(config)
    n = sum(p.numel() for p in model.parameters())
    assert 2.0e9 < n < 2.3e9, n
    assert config.text_config.vocab_size == 151936 and config.tie_word_embeddings
    assert processor.image_processor.get_number_of_image_patches(1024, 1024) // 4 == 1024  # 1024 tokens per image
