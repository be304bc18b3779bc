"""The Step1X-Edit cluster path: requirement errors, the real scripts' command lines, GEdit-Bench and
ImgEdit-Bench evaluation inputs in their layouts, judging through a local OpenAI-compatible server, and
the aggregation into table-5 cells on hand-made examples."""
from __future__ import annotations

import argparse
import csv
import io
import json
import math
import shlex
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fault_server import FaultServer, ok, prompt_text, rate_limited
from PIL import Image

from editcaption.downstream import bench_judge, cluster, gedit, imgedit, step1x
from editcaption.downstream.step1x import ClusterRequirementError
from editcaption.downstream.export import export_step1x
from editcaption.records import RecordError

# scripts/finetuning.sh of stepfun-ai/Step1X-Edit (commit 570eba6), the command our settings reproduce.
FINETUNING_SH = """accelerate launch  --mixed_precision bf16 --num_cpu_threads_per_process 1 --num_processes 1 \
--config_file ./library/accelerate_config.yaml finetuning.py \
--pretrained_model_name_or_path <dit> --qwen2p5vl <qwen> --ae <ae> \
--cache_latents_to_disk --save_model_as safetensors --sdpa --persistent_data_loader_workers \
--max_data_loader_n_workers 2 --seed 42 --gradient_checkpointing --mixed_precision bf16 --save_precision bf16 \
--network_module library.lora_module --network_dim 64 --network_alpha 32 --network_train_unet_only \
--optimizer_type adamw8bit --learning_rate 1e-4 --cache_text_encoder_outputs --cache_text_encoder_outputs_to_disk \
--highvram --max_train_epochs 100 --save_every_n_epochs 5 --dataset_config <toml> --output_dir <out> \
--output_name step1x-edit_test \
--timestep_sampling shift --discrete_flow_shift 3.1582 --model_prediction_type raw --guidance_scale 1.0 --fp8_base"""

# The variable names GEdit-Bench/viescore/__init__.py composes; the texts are ours (markers for the fake judge).
VIE_PROMPTS = '''
_context_no_delimit = """CONTEXT: answer with {"score": [...], "reasoning": "..."}"""
_prompts_0shot_two_image_edit_rule = """RULES: two images, original then edited."""
_prompts_0shot_tie_rule_SC = """SC-RULE: rate editing success and overediting. Editing instruction: <instruction>
"""
_prompts_0shot_rule_PQ = """PQ-RULE: rate naturalness and artifacts."""
'''


def _png(seed: int, size=(16, 12)) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def _fake_checkout(root: Path, *, breakpoint: bool = True) -> Path:
    for name in step1x.CHECKOUT_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    body = "    import pdb;pdb.set_trace()\n" if breakpoint else "    pass\n"
    (root / "finetuning.py").write_text("def encode_images_to_latents(self, args, vae, images):\n" + body)
    (root / "GEdit-Bench" / "viescore").mkdir(parents=True)
    (root / "GEdit-Bench" / "viescore" / "vie_prompts.py").write_text(VIE_PROMPTS)
    return root


def _fake_weights(root: Path) -> Path:
    root.mkdir(parents=True)
    for name in step1x.WEIGHTS.values():
        (root / name).write_bytes(b"")
    return root


def _export(tmp_path: Path) -> Path:
    rows = [{"id": f"p{i}", "source_image": _png(i), "target_image": _png(10 + i), "instruction": f"Edit {i}."}
            for i in range(2)]
    return export_step1x(rows, tmp_path / "exports", name="editcaption")


# ------------------------------------------------------------------------------------- requirements

def test_requirement_error_lists_everything_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(step1x, "_cuda_devices", lambda: 0)
    with pytest.raises(ClusterRequirementError) as caught:
        step1x.require_step1x(None, tmp_path / "nowhere", modules=("surely_not_a_module_xyz",))
    err = caught.value
    assert len(err.missing) == 4
    text = str(err)
    for needed in ("Step1X-Edit checkout", "git clone https://github.com/stepfun-ai/Step1X-Edit",
                   "step1x-edit-i1258.safetensors", "CUDA GPU", "surely_not_a_module_xyz"):
        assert needed in text
    # a partial checkout names the files it lacks; complete weights are not listed
    (tmp_path / "s1x").mkdir()
    (tmp_path / "s1x" / "finetuning.py").write_text("")
    missing = step1x.step1x_requirements(tmp_path / "s1x", _fake_weights(tmp_path / "w"), gpu=False, modules=())
    assert len(missing) == 1 and "scripts/finetuning.sh" in missing[0] and "finetuning.py," not in missing[0]


def test_run_finetuning_without_gpu_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(step1x, "_cuda_devices", lambda: 0)
    export = _export(tmp_path)
    with pytest.raises(ClusterRequirementError, match="CUDA GPU"):
        step1x.run_finetuning(export, checkout=_fake_checkout(tmp_path / "s1x"), model_dir=_fake_weights(tmp_path / "w"),
                               output_dir=tmp_path / "lora", output_name="editcaption")


# ------------------------------------------------------------------------------------- command lines

def _parse_with_options(argv, kinds):
    """An argparse parser with finetuning.py's options (flag / one value / several values), strict."""
    parser = argparse.ArgumentParser(exit_on_error=False)
    for option, kind in kinds.items():
        if kind == "flag":
            parser.add_argument(option, action="store_true")
        else:
            parser.add_argument(option, nargs="+" if kind == "list" else None)
    return parser.parse_args(argv)


def test_finetune_command_is_what_the_real_script_takes(tmp_path):
    from accelerate.commands.launch import launch_command_parser

    export = _export(tmp_path)
    command = step1x.finetune_command(export, checkout=None, model_dir=tmp_path / "w", output_dir=tmp_path / "out",
                                       output_name="step1x-edit_test")
    assert command[1:3] == ["-m", "accelerate.commands.launch"]
    # the accelerate part, parsed by accelerate's own launch parser
    launch = launch_command_parser().parse_args(command[3:])
    assert launch.training_script == "finetuning.py"
    assert (launch.mixed_precision, launch.num_processes, launch.num_cpu_threads_per_process) == ("bf16", 1, 1)
    assert launch.config_file == "./library/accelerate_config.yaml"
    script_args = launch.training_script_args
    # the finetuning.py part: every option is one its parser accepts, with the right arity
    kinds = step1x.accepted_options()
    assert len(kinds) > 200
    parsed = _parse_with_options(script_args, kinds)
    assert parsed.dataset_config == str(export / "dataset_config.toml")
    assert parsed.pretrained_model_name_or_path == str((tmp_path / "w" / "step1x-edit-i1258.safetensors").resolve())
    assert parsed.fp8_base and parsed.network_train_unet_only and parsed.cache_latents_to_disk
    # the same flags and values as scripts/finetuning.sh (paths aside)
    official = shlex.split(FINETUNING_SH)
    official_args = _parse_with_options(official[official.index("finetuning.py") + 1:], kinds)
    paths = {"pretrained_model_name_or_path", "qwen2p5vl", "ae", "dataset_config", "output_dir"}
    ours, theirs = vars(parsed), vars(official_args)
    for key in theirs:
        if key not in paths:
            assert str(ours[key]) == str(theirs[key]) or float(ours[key]) == float(theirs[key]), key
    assert launch_command_parser().parse_args(official[2:]).mixed_precision == "bf16"


def test_finetune_command_rejects_options_the_script_lacks(tmp_path):
    kwargs = dict(checkout=None, model_dir=tmp_path, output_dir=tmp_path, output_name="x")
    with pytest.raises(ValueError, match="does not accept --learning_rate_typo"):
        step1x.finetune_command(tmp_path, overrides={"learning_rate_typo": 1}, **kwargs)
    with pytest.raises(ValueError, match="--highvram of finetuning.py is a flag"):
        step1x.finetune_command(tmp_path, overrides={"highvram": "yes"}, **kwargs)
    with pytest.raises(ValueError, match="takes a value"):
        step1x.finetune_command(tmp_path, overrides={"network_dim": True}, **kwargs)
    command = step1x.finetune_command(tmp_path, overrides={"network_dim": 16, "fp8_base": False,
                                                            "network_args": ["a=1", "b=2"]}, **kwargs)
    assert command[command.index("--network_dim") + 1] == "16" and "--fp8_base" not in command
    assert command[command.index("--network_args") + 1:][:2] == ["a=1", "b=2"]


def test_accepted_options_read_from_a_checkout(tmp_path):
    root = tmp_path / "s1x"
    (root / "library").mkdir(parents=True)
    (root / "finetuning.py").write_text("def setup_parser(p):\n    p.add_argument('--qwen2p5vl', type=str)\n")
    (root / "library" / "train_util.py").write_text(
        "def add(p):\n    p.add_argument('--fp8_base', action='store_true')\n"
        "    p.add_argument('--network_args', type=str, nargs='*')\n")
    assert step1x.accepted_options(root) == {"--qwen2p5vl": "value", "--fp8_base": "flag", "--network_args": "list"}


def test_dry_run_and_the_breakpoint_guard(tmp_path):
    export = _export(tmp_path)
    checkout, weights = _fake_checkout(tmp_path / "s1x"), _fake_weights(tmp_path / "w")
    kwargs = dict(checkout=checkout, model_dir=weights, output_dir=tmp_path / "lora", output_name="editcaption")
    # a checkout with library/ is read for its options: give the fake one the real parser's options
    store_true = {"flag": ", action='store_true'", "list": ", nargs='*'", "value": ""}
    (checkout / "library" / "extra.py").write_text("".join(
        f"p.add_argument('{o}'{store_true[k]})\n" for o, k in step1x.accepted_options().items()))
    result = step1x.run_finetuning(export, dry_run=True, **kwargs)
    assert result["returncode"] is None and result["cwd"] == str(checkout.resolve())
    assert result["lora"].endswith("lora/editcaption.safetensors")
    with pytest.raises(ClusterRequirementError, match="pdb breakpoint"):
        step1x.run_finetuning(export, dry_run=True, overrides={"cache_latents_to_disk": False}, **kwargs)
    with pytest.raises(RecordError):  # the export is checked before anything runs
        step1x.run_finetuning(tmp_path / "not-an-export", dry_run=True, **kwargs)


def test_inference_command_and_its_real_output_folder(tmp_path):
    command = step1x.inference_command(model_dir=tmp_path / "w", input_dir=tmp_path / "in", json_path=tmp_path / "p.json",
                                        output_dir=tmp_path / "out", lora=tmp_path / "l.safetensors", offload=True)
    assert command[1] == "inference.py" and "--lora" in command and "--offload" in command
    assert command[command.index("--size_level") + 1] == "1024"
    assert step1x.inference_output_dir(tmp_path / "out", offload=True) == Path(f"{tmp_path / 'out'}-offload-1024")


# ------------------------------------------------------------------------------------------ GEdit-Bench

def _gedit_rows():
    """Rows in the schema of stepfun-ai/GEdit-Bench (input_image as datasets stores it: PNG bytes)."""
    rows = []
    for i, (group, lang) in enumerate([("color_alter", "en"), ("color_alter", "cn"), ("subject-add", "en"),
                                       ("ps_human", "en")]):
        image = _png(i)
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        rows.append({"task_type": group, "key": f"k{i}", "instruction": f"instruction {i}",
                     "instruction_language": lang, "input_image": {"bytes": buffer.getvalue(), "path": None},
                     "input_image_raw": image, "Intersection_exist": i % 2 == 0})
    return rows


def test_gedit_inputs_and_layout(tmp_path):
    rows = _gedit_rows()
    jobs = gedit.prepare_gedit_edits(rows, tmp_path / "jobs")
    assert set(jobs) == {"en", "cn"}
    assert json.loads(jobs["en"]["json_path"].read_text()) == {"k0.png": "instruction 0", "k2.png": "instruction 2",
                                                               "k3.png": "instruction 3"}
    assert json.loads(jobs["cn"]["json_path"].read_text()) == {"k1.png": "instruction 1"}
    with Image.open(jobs["cn"]["input_dir"] / "k1.png") as image:
        assert np.array_equal(np.asarray(image), np.asarray(_png(1)))
    # edited outputs as inference.py names them (<key>.png); one is missing and reported
    edited = {lang: tmp_path / f"out-{lang}" for lang in ("en", "cn")}
    for lang, job in jobs.items():
        edited[lang].mkdir()
        for name in json.loads(job["json_path"].read_text()):
            _png(99).save(edited[lang] / name)
    (edited["en"] / "k2.png").unlink()
    summary = gedit.arrange_gedit_results(rows, edited, tmp_path / "results", "mymodel")
    assert summary["missing"] == [("en", "k2")] and summary["written"] == 3
    # test_gedit_score.py's paths
    assert (tmp_path / "results/mymodel/fullset/color_alter/cn/k1_SRCIMG.png").exists()
    assert (tmp_path / "results/mymodel/fullset/color_alter/cn/k1.png").exists()
    with Image.open(tmp_path / "results/mymodel/fullset/color_alter/en/k0_SRCIMG.png") as src:
        assert np.array_equal(np.asarray(src), np.asarray(_png(0)))
    bad = dict(rows[0], instruction_language="zh")
    with pytest.raises(RecordError, match="instruction_language"):
        gedit.gedit_items([bad])


def test_duplicate_gedit_keys_are_refused():
    rows = _gedit_rows()
    with pytest.raises(RecordError, match="duplicate key"):
        gedit.gedit_items([rows[0], dict(rows[0], task_type="ps_human")])


def _judge_reply(request):
    text = prompt_text(request["body"])
    images = [p for p in request["body"]["messages"][0]["content"] if p.get("type") == "image_url"]
    assert request["body"]["messages"][0]["content"][0]["type"] == "text"  # text first, as viescore sends it
    assert all(p["image_url"]["url"].startswith("data:image/jpeg;base64,") for p in images)
    if "SC-RULE" in text:
        assert len(images) == 2 and "Editing instruction: instruction" in text
        if "instruction 3" in text:
            return ok("I am not able to rate this.")
        return ok('||V^=^V||\n{"score": [7, 9], "reasoning": "done"}\n||V^=^V||')
    assert "PQ-RULE" in text and len(images) == 1
    return ok('{"score" : [8, 6], "reasoning" : "fine"}')


def test_score_gedit_writes_the_official_csvs(tmp_path, monkeypatch):
    monkeypatch.setenv("H4_TEST_KEY", "")
    rows = _gedit_rows()
    checkout = _fake_checkout(tmp_path / "s1x")
    edited = {lang: tmp_path / f"out-{lang}" for lang in ("en", "cn")}
    for lang, job in gedit.prepare_gedit_edits(rows, tmp_path / "jobs").items():
        edited[lang].mkdir()
        for name in json.loads(job["json_path"].read_text()):
            _png(7, size=(8, 8)).save(edited[lang] / name)  # another size: resized to the source's, as the scorer does
    gedit.arrange_gedit_results(rows, edited, tmp_path / "results", "m")
    lock, seen = threading.Lock(), []

    def flaky(request):  # the very first request is rate-limited once, then answered
        with lock:
            seen.append(1)
            first = len(seen) == 1
        return rate_limited(0) if first else _judge_reply(request)

    with FaultServer(default=flaky) as server:
        judge = bench_judge.BenchmarkJudge("gpt-4.1", server.url, api_key_env="H4_TEST_KEY", backoff_s=0.01, max_workers=2)
        cache = tmp_path / "judge.jsonl"
        result = gedit.score_gedit(rows, tmp_path / "results", "m", judge=judge, checkout=checkout, cache_path=cache)
        assert server.count() == 9  # 4 items x (SC, PQ) + 1 retry
        again = gedit.score_gedit(rows, tmp_path / "results", "m", judge=judge, checkout=checkout, cache_path=cache)
        assert server.count() == 9  # the rerun was answered from the cache
    assert result["scored"] == 3 and list(result["failures"]) == ["en/ps_human/k3"]
    assert again["scored"] == 3
    out = tmp_path / "results/m/gpt4o/eval_results_new"
    with open(out / "m_color_alter_gpt_score.csv", newline="") as handle:
        lines = list(csv.DictReader(handle))
    assert list(lines[0]) == list(gedit.GEDIT_CSV_FIELDS)
    assert {(r["instruction_language"], r["sementics_score"], r["quality_score"]) for r in lines} == {("en", "7", "6"),
                                                                                                      ("cn", "7", "6")}
    assert (out / "m_combined_gpt_score.csv").exists() and (out / "m_text_change_gpt_score.csv").exists()


def test_gedit_prompts_need_the_checkout(tmp_path):
    with pytest.raises(ClusterRequirementError, match="vie_prompts.py"):
        gedit.gedit_prompts(tmp_path)
    prompts = gedit.gedit_prompts(_fake_checkout(tmp_path / "s1x"))
    assert prompts["SC"].startswith("CONTEXT") and "<instruction>" in prompts["SC"] and "PQ-RULE" in prompts["PQ"]


def test_viescore_reply_parsing():
    assert gedit.parse_viescore('||V^=^V|| {"score": [7, 9], "reasoning": "a"} ||V^=^V||') == [7, 9]
    assert gedit.parse_viescore('Sure: {"score": 4, "reasoning": "x"}') == [4]
    assert gedit.parse_viescore("[6, 0]") == [6, 0]
    assert gedit.parse_viescore("no score here") is None
    assert gedit.parse_viescore('{"score": [12, 3]}') is None


def _write_gedit_csv(folder: Path, model: str, group: str, rows: list[tuple]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{model}_{group}_gpt_score.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=gedit.GEDIT_CSV_FIELDS)
        writer.writeheader()
        for sc, pq, lang, inter in rows:
            writer.writerow({"source_image": "s.png", "edited_image": "e.png", "instruction": "i", "sementics_score": sc,
                             "quality_score": pq, "intersection_exist": inter, "instruction_language": lang})


def test_gedit_statistics_by_hand(tmp_path):
    folder = tmp_path / "eval_results_new"
    for group in gedit.GEDIT_GROUPS:  # every group: SC 4 and 9 with PQ 9 and 4 in English -> O = 6 each
        _write_gedit_csv(folder, "m", group, [(4, 9, "en", True), (9, 4, "en", False), (8, 2, "cn", True)])
    _write_gedit_csv(folder, "m", "color_alter", [(4, 9, "en", True), (9, 4, "en", False), (1, 1, "en", True),
                                                  (8, 2, "cn", True)])
    en = gedit.gedit_statistics(folder, "m", "en")
    assert en.loc["subject-add", "n"] == 2 and en.loc["subject-add", "G_SC"] == 6.5 and en.loc["subject-add", "G_O"] == 6
    assert en.loc["color_alter", "G_O"] == pytest.approx((6 + 6 + 1) / 3)
    assert en.loc["average", "G_O"] == pytest.approx((10 * 6 + 13 / 3) / 11)
    assert en.loc["average", "n"] == 23
    cn = gedit.gedit_statistics(folder, "m", "cn")
    assert cn.loc["average", "G_O"] == pytest.approx(4) and cn.loc["average", "G_PQ"] == 2
    inter = gedit.gedit_statistics(folder, "m", "en", intersection_only=True)
    assert inter.loc["subject-add", "G_O"] == 6 and inter.loc["color_alter", "G_SC"] == 2.5
    (folder / "m_tone_transfer_gpt_score.csv").unlink()
    with pytest.raises(RecordError, match="tone_transfer"):
        gedit.gedit_statistics(folder, "m", "en")


# ---------------------------------------------------------------------------------------- ImgEdit-Bench

def _imgedit_fixture(tmp_path: Path):
    """basic_edit.json (one key per edit type plus a second 'add'), originals under animal/ and style/."""
    basic_edit = {}
    for i, kind in enumerate(imgedit.IMGEDIT_TYPES + ("add",)):
        folder = "style" if kind == "style" else "animal"
        basic_edit[str(100 + i)] = {"id": f"{folder}/{i:09d}.jpg", "prompt": f"do {kind} {i}", "edit_type": kind}
        path = tmp_path / "origin" / folder / f"{i:09d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        _png(i).save(path, format="JPEG")
    (tmp_path / "basic_edit.json").write_text(json.dumps(basic_edit))
    checkout = tmp_path / "ImgEdit"
    (checkout / "Benchmark" / "Basic").mkdir(parents=True)
    (checkout / "Benchmark" / "Basic" / "prompts.json").write_text(json.dumps(
        {kind: f"RATE-{kind}: score 1 to 5. editing instruction is : <edit_prompt>." for kind in imgedit.IMGEDIT_TYPES}))
    return tmp_path / "basic_edit.json", tmp_path / "origin", checkout


def test_imgedit_inputs_layout_and_command(tmp_path):
    basic_edit, origin, checkout = _imgedit_fixture(tmp_path)
    job = imgedit.prepare_imgedit_edits(basic_edit, origin, tmp_path / "job")
    prompts = json.loads(job["json_path"].read_text())
    assert prompts["100"+".png"] == "do add 0" and len(prompts) == 10
    with Image.open(job["input_dir"] / "100.png") as image, Image.open(origin / "animal/000000000.jpg") as original:
        assert image.format == "PNG" and np.array_equal(np.asarray(image), np.asarray(original.convert("RGB")))
    (tmp_path / "edited").mkdir()
    for name in list(prompts)[:-1]:
        _png(5).save(tmp_path / "edited" / name)
    summary = imgedit.arrange_imgedit_results(basic_edit, tmp_path / "edited", tmp_path / "result")
    assert summary == {"written": 9, "missing": ["109"]}
    command = imgedit.imgedit_bench_command(checkout, result_img_folder=tmp_path / "result", edit_json=basic_edit,
                                            origin_img_root=origin, num_processes=4)
    assert command[1].endswith("Benchmark/Basic/basic_bench.py")
    assert "--edit_json" in command and "--basic_edit" not in command  # the script's real argument name
    with pytest.raises(RecordError, match="edit_type"):
        imgedit.imgedit_items({"1": {"id": "a.jpg", "prompt": "p", "edit_type": "hybrid"}})


def test_score_imgedit_and_its_two_steps(tmp_path, monkeypatch):
    monkeypatch.setenv("H4_TEST_KEY", "")
    basic_edit, origin, checkout = _imgedit_fixture(tmp_path)
    (tmp_path / "result").mkdir()
    for key in json.loads(basic_edit.read_text()):
        _png(3).save(tmp_path / "result" / f"{key}.png")

    def reply(request):
        content = request["body"]["messages"][0]["content"]
        assert content[0]["type"] == "text" and [p["type"] for p in content[1:]] == ["image_url", "image_url"]
        text = prompt_text(request["body"])
        if "do compose" in text:
            return ok("Brief reasoning: cannot tell.")  # no score lines -> a counted failure
        score = 5 if "RATE-style" in text else 2
        return ok(f"Brief reasoning: fine.\nPrompt Compliance: {score}\nVisual Seamlessness: 4\nPhysical & Detail Fidelity: 3")

    with FaultServer(default=reply) as server:
        judge = bench_judge.BenchmarkJudge("gpt-4.1", server.url, api_key_env="H4_TEST_KEY", backoff_s=0.01)
        result = imgedit.score_imgedit(basic_edit, origin, tmp_path / "result", judge=judge, imgedit_checkout=checkout)
    assert json.loads((tmp_path / "result" / "result.json").read_text())["100"].startswith("Brief reasoning")
    assert result["scored"] == 9 and list(result["failures"]) == ["107"] and result["missing"] == []
    assert result["average"]["100"] == 3.0 and result["average"]["106"] == 4.0
    assert result["typescore"]["style"] == 4.0 and result["typescore"]["add"] == 3.0 and "compose" not in result["typescore"]
    assert math.isnan(imgedit.imgedit_overall(result["typescore"]))  # an edit type unscored -> no overall


def test_imgedit_steps_by_hand():
    results = {"1": "Brief reasoning: x\nPrompt Compliance: 1\nVisual Seamlessness: 4\nPhysical & Detail Fidelity: 4",
               "2": "Brief reasoning: y\nStyle Fidelity: 1\nContent Preservation: 5\nRendering Quality: 5",
               "3": "Prompt Compliance: 5\nVisual Seamlessness: 5\nPhysical & Detail Fidelity: 4", "4": "no scores"}
    average = imgedit.imgedit_average_scores(results)
    assert average == {"1": 3.0, "2": 3.67, "3": 4.67}
    meta = {"1": {"id": "a.jpg", "prompt": "p", "edit_type": "adjust"}, "2": {"id": "b.jpg", "prompt": "p", "edit_type": "style"},
            "3": {"id": "c.jpg", "prompt": "p", "edit_type": "adjust"}, "4": {"id": "d.jpg", "prompt": "p", "edit_type": "add"}}
    assert imgedit.imgedit_type_scores(average, meta) == {"adjust": 3.83, "style": 3.67}
    full = dict(zip(imgedit.IMGEDIT_TYPES, [3.88, 3.14, 1.76, 3.40, 2.41, 3.16, 4.63, 2.64, 2.52], strict=True))
    assert imgedit.imgedit_overall(full) == pytest.approx(27.54 / 9)


# ------------------------------------------------------------------------------------------------ table 5

def test_table5_cells(tmp_path):
    from editcaption.records import LONG_COLUMNS

    stats = pd.DataFrame({"n": [4], "G_SC": [7.5], "G_PQ": [6.5], "G_O": [6.9]}, index=["average"])
    types = {kind: 3.0 for kind in imgedit.IMGEDIT_TYPES} | {"style": 4.8}
    rows = cluster.table5_rows("+ EditCaption (ours)", gedit={"en": stats, "cn": stats}, imgedit=types,
                               data="GEdit-Bench, ImgEdit Basic")
    assert list(rows.columns) == list(LONG_COLUMNS) and set(rows["table"]) == {"table5"}
    cells = rows.set_index(["benchmark", "metric"])["value"]
    assert cells[("ImgEdit", "overall")] == pytest.approx((8 * 3.0 + 4.8) / 9)
    assert cells[("GEdit-EN", "overall")] == 6.9 and cells[("GEdit-CN", "G_SC")] == 7.5
    assert set(rows["judge"]) == {"openai:gpt-4.1"}


def test_table5_path_lists_every_missing_piece_before_starting(monkeypatch, tmp_path):
    monkeypatch.setattr(step1x, "_cuda_devices", lambda: 0)
    monkeypatch.delenv("H4_ABSENT_KEY", raising=False)
    with pytest.raises(ClusterRequirementError) as caught:
        cluster.run_table5({"editcaption": tmp_path}, tmp_path / "out", step1x_checkout=None, step1x_model_dir=None,
                           gedit_data=None, imgedit_checkout=None, imgedit_images=None, api_key_env="H4_ABSENT_KEY")
    text = str(caught.value)
    for needed in ("Step1X-Edit checkout", "weights folder", "CUDA GPU", "GEdit-Bench data", "ImgEdit checkout",
                   "Basic images", "H4_ABSENT_KEY"):
        assert needed in text
    assert not (tmp_path / "out").exists()  # nothing started


def test_load_gedit_from_a_saved_copy(tmp_path):
    import datasets

    rows = _gedit_rows()
    features = datasets.Features({"task_type": datasets.Value("string"), "key": datasets.Value("string"),
                                  "instruction": datasets.Value("string"), "instruction_language": datasets.Value("string"),
                                  "input_image": datasets.Image(), "input_image_raw": datasets.Image(),
                                  "Intersection_exist": datasets.Value("bool")})
    datasets.Dataset.from_list(rows, features=features).save_to_disk(str(tmp_path / "gedit"))
    items = cluster.load_gedit(tmp_path / "gedit")
    assert [i["key"] for i in items] == ["k0", "k1", "k2", "k3"]
    assert items[0]["input_image"]["bytes"] == rows[0]["input_image"]["bytes"]
