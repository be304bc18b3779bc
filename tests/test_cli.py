"""The command line as a user runs it: synth, build-tiny-model, score, and the README/CI contract."""
import filecmp
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from editcaption import paths, records

ROOT = paths.repo_root()
EDITCAPTION = str(Path(sys.executable).parent / "editcaption")


def cli(*args, check=True):
    proc = subprocess.run([EDITCAPTION, *args], capture_output=True, text=True, cwd=ROOT)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_help_lists_every_command():
    out = cli("--help").stdout
    for command in ("run", "build-tiny-model", "pretrain-tiny", "synth", "score"):
        assert command in out


def test_synth_twice_gives_identical_files_and_the_paper_mix(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    cli("synth", "--n", "200", "--seed", "0", "--size", "128", "--out", str(a))
    cli("synth", "--n", "200", "--seed", "0", "--size", "128", "--out", str(b))
    files = sorted(p.name for p in a.iterdir())
    match, mismatch, errors = filecmp.cmpfiles(a, b, files, shallow=False)
    assert not mismatch and not errors and len(match) == len(files)
    share = Counter(records.load_pairs(a)["category"])
    for category, target in (("semantic", 25), ("stylistic", 25), ("structural", 50)):
        assert abs(100 * share[category] / 200 - target) <= 5, share


def test_reference_instructions_score_full_marks_and_swaps_are_orientation_p0(tmp_path):
    pairs_dir = tmp_path / "pairs"
    cli("synth", "--n", "300", "--seed", "1", "--out", str(pairs_dir))
    pairs = records.load_pairs(pairs_dir)
    ref = tmp_path / "ref.jsonl"
    ref.write_text("".join(json.dumps({"id": i, "instruction": t}) + "\n" for i, t in zip(pairs["id"], pairs["instruction"])))
    cli("score", "--pairs", str(pairs_dir), "--instructions", str(ref), "--judge", "rule", "--out", str(tmp_path / "s.jsonl"))
    scores = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert len(scores) == 300
    assert sum(s["composite"] == 5.0 for s in scores) / len(scores) >= 0.99

    swapped = {}
    for row in pairs:
        moves = [c for c in row["changes"] if c["primary"] and c["op"] == "move" and c["direction"] in ("left", "right")]
        if len(row["changes"]) == 1 and moves:
            text = row["instruction"]
            swapped[row["id"]] = text.replace("left", "\0").replace("right", "left").replace("\0", "right")
    assert swapped, "no single left/right move among 300 pairs"
    swap_file = tmp_path / "swap.jsonl"
    swap_file.write_text("".join(json.dumps({"id": i, "instruction": t}) + "\n" for i, t in swapped.items()))
    cli("score", "--pairs", str(pairs_dir), "--instructions", str(swap_file), "--out", str(tmp_path / "w.jsonl"))
    tagged = [json.loads(line) for line in (tmp_path / "w.jsonl").read_text().splitlines()]
    assert all(t["error_type"] == "orientation" and t["severity"] == "P0" for t in tagged), tagged[:3]


def test_score_with_an_unknown_pair_id_names_file_line_and_field(tmp_path):
    pairs_dir = tmp_path / "pairs"
    cli("synth", "--n", "5", "--seed", "0", "--out", str(pairs_dir))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": "nope", "instruction": "Move the red circle to the left."}) + "\n")
    proc = cli("score", "--pairs", str(pairs_dir), "--instructions", str(bad), "--out", str(tmp_path / "o.jsonl"), check=False)
    assert proc.returncode == 2
    assert "bad.jsonl" in proc.stderr and "1" in proc.stderr and "id" in proc.stderr


def test_synth_into_a_missing_pairs_folder_is_a_clear_error(tmp_path):
    proc = cli("score", "--pairs", str(tmp_path / "missing"), "--instructions", str(tmp_path / "x.jsonl"),
               "--out", str(tmp_path / "o.jsonl"), check=False)
    assert proc.returncode == 2 and "missing" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_build_tiny_model_then_generate_from_a_two_image_chat(tmp_path):
    from PIL import Image
    from transformers import AutoModelForImageTextToText, AutoProcessor

    out = tmp_path / "m"
    cli("build-tiny-model", "--preset", "smoke", "--out", str(out))
    processor = AutoProcessor.from_pretrained(out)
    model = AutoModelForImageTextToText.from_pretrained(out)
    messages = [{"role": "user", "content": [{"type": "image", "image": Image.new("RGB", (64, 64), "red")},
                                             {"type": "image", "image": Image.new("RGB", (64, 64), "blue")},
                                             {"type": "text", "text": "What changed?"}]}]
    inputs = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    generated = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > inputs["input_ids"].shape[1]
    assert isinstance(processor.decode(generated[0, inputs["input_ids"].shape[1]:]), str)


def test_ci_runs_the_readme_setup_then_its_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make demo" in readme and "make test" in readme
    lines = [line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert lines.index("make setup") < lines.index("make test")
