"""The CPU editor of table 5 and its metrics: it learns a trivial colour edit; PSNR, SSIM and the cell check."""
import math

import numpy as np
import pytest
import torch
from PIL import Image

from editcaption.downstream import edit_eval
from editcaption.downstream.editor import EditorConfig, TrainedEditor, Triplets, Vocabulary, train_editor
from editcaption.records import RecordError

COLOURS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60)}
BACKGROUND = (245, 245, 245)


def _grid(cells: dict, n: int = 2, cell: int = 32) -> np.ndarray:
    """An n×n grid image with a solid square of the given colour in each listed (row, col) cell."""
    image = np.full((n * cell, n * cell, 3), BACKGROUND, dtype=np.uint8)
    for (r, c), colour in cells.items():
        image[r * cell + 4:(r + 1) * cell - 4, c * cell + 4:(c + 1) * cell - 4] = colour
    return image


def _colour_edits(n: int, seed: int) -> list[dict]:
    """Recolour the one square to the colour the instruction names (its cell and colours vary)."""
    rng = np.random.default_rng(seed)
    names = list(COLOURS)
    rows = []
    for i in range(n):
        cell = (int(rng.integers(2)), int(rng.integers(2)))
        before, after = rng.choice(len(names), size=2, replace=False)
        rows.append({"id": f"t{seed}-{i}", "source_image": _grid({cell: COLOURS[names[before]]}),
                     "target_image": _grid({cell: COLOURS[names[after]]}),
                     "instruction": f"make the square {names[after]}", "edit_type": "color"})
    return rows


def test_psnr_and_ssim_match_known_values():
    a = np.zeros((32, 32, 3), dtype=np.uint8)
    b = np.full((32, 32, 3), 10, dtype=np.uint8)
    assert edit_eval.psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert edit_eval.psnr(a, a) == math.inf
    noise = np.random.default_rng(0).integers(0, 256, (48, 48, 3)).astype(np.uint8)
    assert edit_eval.ssim(noise, noise) == pytest.approx(1.0, abs=1e-5)
    # a constant offset: luminance term only, (2 mu_a mu_b + C1) / (mu_a² + mu_b² + C1) with mu in 0..1
    flat_a, flat_b = np.full((32, 32, 3), 100, np.uint8), np.full((32, 32, 3), 150, np.uint8)
    mu_a, mu_b, c1 = 100 / 255, 150 / 255, 0.01**2
    assert edit_eval.ssim(flat_a, flat_b) == pytest.approx((2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1), rel=1e-4)
    assert edit_eval.ssim(noise, 255 - noise) < 0


def test_edit_success_checks_the_touched_cells_colour_and_presence():
    source = _grid({(0, 0): COLOURS["red"], (1, 1): COLOURS["blue"]})
    target = _grid({(0, 0): COLOURS["green"], (1, 1): COLOURS["blue"]})  # the red square turns green
    assert edit_eval.edit_success(target, source, target) == {"success": True, "cells": 1, "cells_ok": 1, "kept": 1.0}
    assert edit_eval.edit_success(source, source, target)["success"] is False  # no edit
    wrong = _grid({(0, 0): COLOURS["red"], (1, 1): COLOURS["green"]})  # recoloured the other square
    assert edit_eval.edit_success(wrong, source, target) == {"success": False, "cells": 1, "cells_ok": 0,
                                                             "kept": 1 - 24 * 24 / (3 * 32 * 32)}  # the other square
    nearly = _grid({(0, 0): (60, 160, 70), (1, 1): COLOURS["blue"]})  # close to green
    assert edit_eval.edit_success(nearly, source, target)["success"] is True
    repainted = target.copy()
    repainted[40:, :] = 0  # the right edit, and the bottom row of cells wrecked
    assert edit_eval.edit_success(repainted, source, target)["cells_ok"] == 1
    assert edit_eval.edit_success(repainted, source, target)["success"] is False

    moved = _grid({(0, 1): COLOURS["red"], (1, 1): COLOURS["blue"]})  # move: one cell loses it, one gains it
    half = _grid({(0, 0): COLOURS["red"], (0, 1): COLOURS["red"], (1, 1): COLOURS["blue"]})  # added, not moved
    assert edit_eval.edit_success(moved, source, moved)["success"] is True
    assert edit_eval.edit_success(half, source, moved) == {"success": False, "cells": 2, "cells_ok": 1, "kept": 1.0}
    removed = _grid({(1, 1): COLOURS["blue"]})
    assert edit_eval.edit_success(removed, source, removed)["success"] is True
    assert edit_eval.edit_success(source, source, source) == {"success": None, "cells": 0, "cells_ok": 0, "kept": 1.0}
    with pytest.raises(ValueError, match="shapes differ"):
        edit_eval.edit_success(source[:32], source, target)


def test_editor_learns_a_colour_edit_and_beats_identity(tmp_path):
    torch.set_num_threads(1)
    train, held_out = _colour_edits(48, seed=0), _colour_edits(16, seed=1)
    config = EditorConfig(channels=(16, 24, 32), embed_dim=16, text_dim=16, steps=120, batch_size=16,
                          learning_rate=5e-3, seed=3)
    editor = train_editor(train, config, out_dir=tmp_path / "editor", progress=False)
    assert editor.info["final_loss"] < 0.5 * editor.info["first_loss"]
    outputs = editor.edit([r["source_image"] for r in held_out], [r["instruction"] for r in held_out])
    scores = edit_eval.summarize_edits(edit_eval.score_edits(held_out, outputs))
    identity = edit_eval.summarize_edits(edit_eval.score_edits(held_out, edit_eval.identity_outputs(held_out)))
    assert identity["edit_success"]["value"] == 0
    assert scores["edit_success"]["value"] >= 75 and scores["PSNR"]["value"] > identity["PSNR"]["value"] + 3
    assert set(scores["per_op"]) == {"color"}

    short = EditorConfig(channels=(8, 8, 8), embed_dim=8, text_dim=8, steps=6, batch_size=8, seed=3)
    first, second = (train_editor(train, short, progress=False).model.state_dict() for _ in range(2))
    for key, value in first.items():  # same data and seed: same weights
        assert torch.equal(value, second[key]), key
    loaded = TrainedEditor.load(tmp_path / "editor")
    assert loaded.info == editor.info and loaded.vocab.tokens == editor.vocab.tokens
    reloaded = loaded.edit([r["source_image"] for r in held_out], [r["instruction"] for r in held_out])
    assert all(np.array_equal(a, b) for a, b in zip(outputs, reloaded))


def test_vocabulary_and_bad_triplets():
    vocab = Vocabulary.build(["Make the square RED.", "paint it mauve"])
    assert {"red", "mauve", "square", "clockwise", "hexagon"} <= set(vocab.tokens) and vocab.tokens[:2] == ["<pad>", "<unk>"]
    ids, lengths = vocab.encode(["make it zzz", ""], max_words=8)
    assert ids[0, 2] == 1 and lengths.tolist() == [3, 1]  # unknown word and empty instruction: <unk>
    good = _colour_edits(2, seed=0)
    with pytest.raises(RecordError, match="row t0-1.*field 'instruction'"):
        Triplets.from_rows([good[0], {**good[1], "instruction": None}])
    with pytest.raises(RecordError, match="row t0-1.*source_image"):
        Triplets.from_rows([good[0], {**good[1], "source_image": _grid({}, n=3)}])
    with pytest.raises(RecordError, match="field 'target_image'"):
        Triplets.from_rows([{k: v for k, v in good[0].items() if k != "target_image"}])
    pil = {**good[0], "source_image": Image.fromarray(good[0]["source_image"])}
    assert np.array_equal(Triplets.from_rows([pil]).sources[0], good[0]["source_image"])
    with pytest.raises(ValueError, match="channels"):
        EditorConfig(channels=(8, 8))


def test_table5_rows_follow_the_long_contract():
    from editcaption import records

    rows = _colour_edits(6, seed=2)
    scores = edit_eval.score_edits(rows, [r["target_image"] for r in rows])
    summary = edit_eval.summarize_edits(scores)
    assert summary["edit_success"]["value"] == 100 and summary["PSNR"]["value"] == 100
    long_rows = edit_eval.table5_rows({"oracle": summary}, data="unit")
    records.validate_long(long_rows)
    assert list(long_rows["metric"]) == ["PSNR", "SSIM", "edit_success", "edit_success:color"]


def test_captioners_of_missing_stages_are_skipped_with_the_reason(tmp_path):
    import json

    stage = tmp_path / "run" / "02_sft"
    for folder in (stage / "base_model", stage / "final"):
        folder.mkdir(parents=True)
        (folder / "config.json").write_text("{}")
    (stage / "metrics.json").write_text(json.dumps({"sft_model": str(stage / "final")}))
    found, skipped = edit_eval.resolve_captioners("base,sft,hae_dpo,teacher,gt", run_name="run", output_root=tmp_path)
    assert list(found) == ["base", "sft", "teacher", "gt"] and found["sft"]["model"] == str(stage / "final")
    assert list(skipped) == ["hae_dpo"] and "04_hae_dpo" in skipped["hae_dpo"]
    found, skipped = edit_eval.resolve_captioners("gt,sft", run_name="other", output_root=tmp_path)
    assert list(found) == ["gt"] and "02_sft" in skipped["sft"]
    with pytest.raises(ValueError, match="subset of base, sft"):
        edit_eval.resolve_captioners("gt,teacher2", run_name="run", output_root=tmp_path)


def test_cluster_backend_lists_what_is_missing_before_any_work(tmp_path, monkeypatch):
    from editcaption.downstream import step1x

    paths = {"step1x_checkout": "", "step1x_model_dir": str(tmp_path / "weights"), "gedit_data": "",
             "imgedit_checkout": "", "imgedit_images": "", "judge_model": "gpt-4.1", "judge_base_url": "",
             "judge_api_key_env": "H5_TEST_KEY_NOT_SET"}
    monkeypatch.delenv("H5_TEST_KEY_NOT_SET", raising=False)
    plan = edit_eval.cluster_settings("cpu", **paths)  # does not run; lists what a cluster run would need
    assert not plan.run and any("GEdit-Bench" in need for need in plan.missing)
    with pytest.raises(ValueError, match="cpu, step1x"):
        edit_eval.cluster_settings("diffusion", **paths)
    monkeypatch.delenv("H5_TEST_KEY_NOT_SET", raising=False)
    with pytest.raises(step1x.ClusterRequirementError) as err:
        edit_eval.cluster_settings("step1x", **paths)
    message = str(err.value)
    for need in ("Step1X-Edit checkout", "weights folder", "GEdit-Bench", "ImgEdit", "H5_TEST_KEY_NOT_SET"):
        assert need in message, need


def _former_ssim_map(a, b, size=11, sigma=1.5):
    """The project's former hand-written SSIM (separable Gaussian, valid region), kept as the reference."""
    import torch
    from torch.nn import functional as F

    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(a)
    c = a.shape[1]
    rows, cols = g.view(1, 1, size, 1).expand(c, 1, size, 1), g.view(1, 1, 1, size).expand(c, 1, 1, size)
    blur = lambda t: F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)
    mu_a, mu_b = blur(a), blur(b)
    var_a, var_b, cov = blur(a * a) - mu_a**2, blur(b * b) - mu_b**2, blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def test_library_ssim_and_psnr_equal_the_former_ones_on_fixtures():
    """Evaluation: scikit-image in float64; the editor's loss: torchmetrics in float32. Both against the former
    hand-written float64 SSIM (kept in this file as the reference)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    from editcaption.world.synthetic import generate_pairs
    from editcaption.downstream.editor import _tensor, ssim_map

    pairs = generate_pairs(6, seed=0, size=128, progress=False)
    noisy = np.random.default_rng(0).integers(0, 256, (128, 128, 3)).astype(np.uint8)
    for source, target in [*zip(pairs["source_image"], pairs["target_image"]), (noisy, 255 - noisy)]:
        s, t = np.asarray(source), np.asarray(target)
        former = float(_former_ssim_map(_tensor([s]).double(), _tensor([t]).double()).mean())
        # the former divided by 255 in float32 before going to float64: 1e-8 off the exact uint8 -> float64 value
        assert edit_eval.ssim(s, t) == pytest.approx(former, abs=1e-7)
        mse = np.mean((s.astype(float) - t.astype(float)) ** 2)
        assert edit_eval.psnr(s, t) == pytest.approx(10 * math.log10(255**2 / mse), abs=1e-10)
        # torchmetrics in float64 is the same formula (one 2-D pass instead of two 1-D ones)
        assert float(ssim_map(_tensor([s]).double(), _tensor([t]).double()).mean()) == pytest.approx(former, abs=1e-12)
        # the editor's float32 loss map: torchmetrics' 11x11 kernel rounds more in flat regions, where variances
        # cancel: measured up to 2.2e-3 off the float64 map, 0.8e-3 on the mean
        a32, b32 = _tensor([s]), _tensor([t])
        truth = _former_ssim_map(a32.double(), b32.double())
        assert float((ssim_map(a32, b32).double() - truth).abs().max()) < 5e-3
        assert abs(float(ssim_map(a32, b32).mean()) - float(truth.mean())) < 2e-3
    # torchmetrics' own scalar averages a reflect-padded border in: why ssim_map crops it (noise, 128 px)
    a, b = _tensor([noisy]).double(), _tensor([255 - noisy]).double()
    padded = float(structural_similarity_index_measure(a, b, gaussian_kernel=True, sigma=1.5, kernel_size=11, data_range=1.0))
    assert padded != pytest.approx(float(ssim_map(a, b).mean()), abs=1e-6)
