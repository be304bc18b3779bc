"""ImgEdit-Bench Basic as its `Benchmark/Basic` scripts score it: the items, the edits laid out, the prompt per
edit type sent to the judge, and the per-image, per-type and overall scores.

Nothing here is vendored; the code follows these sources (read at the commits named):

- PKU-YuanGroup/ImgEdit @547185d: `Benchmark/Basic/basic_bench.py` (`<result_img_folder>/<key>.png`, the
  original at `<origin_img_root>/<id>`, the prompt of `prompts.json[edit_type]` with `<edit_prompt>`
  replaced, then the original and the edited image; replies saved as `result.json` in the result folder;
  its argument is `--edit_json`, not the README's `--basic_edit`), `step1_get_avgscore.py` (per image the
  mean of the "Name: <digit>" lines, rounded to 2) and `step2_typescore.py` (per edit type the mean,
  rounded to 2); the overall ImgEdit score is the mean over the edit types.

Where a reply cannot be parsed the official scripts guess a random score;
here the item is left out and counted in the result's `failures`.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Mapping

from editcaption.downstream.bench_judge import BenchmarkJudge, file_url, png_bytes
from editcaption.downstream.step1x import ClusterRequirementError
from editcaption.records import RecordError

IMGEDIT_TYPES = ("add", "adjust", "extract", "replace", "remove", "background", "style", "compose", "action")
IMGEDIT_FIELDS = ("id", "prompt", "edit_type")


# ------------------------------------------------------------------------------------------ ImgEdit-Bench

def imgedit_items(basic_edit: Mapping[str, Any] | str | Path) -> dict[str, dict]:
    """ImgEdit Basic's `basic_edit.json` ({key: {"id", "prompt", "edit_type"}}), checked."""
    source = None
    if isinstance(basic_edit, (str, Path)):
        source = Path(basic_edit)
        basic_edit = json.loads(source.read_text(encoding="utf-8"))
    if not isinstance(basic_edit, Mapping):
        raise RecordError("expected a JSON object {key: {id, prompt, edit_type}}", file=source)
    items = {}
    for key, entry in basic_edit.items():
        for field in IMGEDIT_FIELDS:
            if not isinstance(entry, Mapping) or not isinstance(entry.get(field), str) or not entry[field]:
                raise RecordError("missing or empty", file=source, row=key, field=field)
        if entry["edit_type"] not in IMGEDIT_TYPES:
            raise RecordError(f"edit_type {entry['edit_type']!r} not in {IMGEDIT_TYPES}", file=source, row=key,
                              field="edit_type")
        items[str(key)] = dict(entry)
    return items


def prepare_imgedit_edits(basic_edit, origin_img_root: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Inputs for inference.py: `<out_dir>/images/<key>.png` (the original, as PNG) and `<out_dir>/prompts.json`
    ({"<key>.png": prompt}); its outputs are then named as basic_bench.py wants them."""
    items = imgedit_items(basic_edit)
    images = Path(out_dir) / "images"
    images.mkdir(parents=True, exist_ok=True)
    prompts = {}
    for key, entry in items.items():
        original = Path(origin_img_root) / entry["id"]
        (images / f"{key}.png").write_bytes(png_bytes(str(original), row=key, field="id"))
        prompts[f"{key}.png"] = entry["prompt"]
    json_path = Path(out_dir) / "prompts.json"
    json_path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"input_dir": images, "json_path": json_path}


def arrange_imgedit_results(basic_edit, edited_dir: str | Path, result_img_folder: str | Path) -> dict:
    """Copy `<edited_dir>/<key>.png` to `<result_img_folder>/<key>.png`; missing edits are reported."""
    out = Path(result_img_folder)
    out.mkdir(parents=True, exist_ok=True)
    written, missing = 0, []
    for key in imgedit_items(basic_edit):
        edited = Path(edited_dir) / f"{key}.png"
        if not edited.exists():
            missing.append(key)
            continue
        (out / f"{key}.png").write_bytes(png_bytes(str(edited), row=key, field="edited_image"))
        written += 1
    return {"written": written, "missing": missing}


def imgedit_prompts(imgedit_checkout: str | Path) -> dict[str, str]:
    """Benchmark/Basic/prompts.json of an ImgEdit checkout ({edit_type: prompt with <edit_prompt>})."""
    path = Path(imgedit_checkout) / "Benchmark" / "Basic" / "prompts.json"
    if not path.exists():
        raise ClusterRequirementError("ImgEdit-Bench judging", [
            f"Benchmark/Basic/prompts.json of an ImgEdit checkout (imgedit_checkout={str(imgedit_checkout)!r}; "
            "git clone https://github.com/PKU-YuanGroup/ImgEdit)"])
    prompts = json.loads(path.read_text(encoding="utf-8"))
    absent = [t for t in IMGEDIT_TYPES if t not in prompts]
    if absent:
        raise RecordError(f"no prompt for {absent}", file=path, field=absent[0])
    return prompts


def imgedit_bench_command(imgedit_checkout: str | Path, *, result_img_folder, edit_json, origin_img_root,
                          num_processes: int = 32, python: str = sys.executable) -> list[str]:
    """The official scorer's command line (Benchmark/Basic/basic_bench.py; it needs its key and URL edited in)."""
    root = Path(imgedit_checkout) / "Benchmark" / "Basic"
    return [python, str(root / "basic_bench.py"), "--result_img_folder", str(result_img_folder), "--edit_json",
            str(edit_json), "--origin_img_root", str(origin_img_root), "--num_processes", str(num_processes),
            "--prompts_json", str(root / "prompts.json")]


def score_imgedit(basic_edit, origin_img_root: str | Path, result_img_folder: str | Path, *, judge: BenchmarkJudge,
                  imgedit_checkout: str | Path, cache_path: str | Path | None = None, progress: bool = False) -> dict:
    """Judge every edited image as basic_bench.py does and write its `result.json`, then step 1 and 2's
    `average_score.json` and `typescore.json` beside it. Returns {"result_json", "average", "typescore",
    "scored", "missing", "failures"}."""
    items = imgedit_items(basic_edit)
    prompts = imgedit_prompts(imgedit_checkout)
    folder = Path(result_img_folder)
    requests, missing = [], []
    for key, entry in items.items():
        edited, original = folder / f"{key}.png", Path(origin_img_root) / entry["id"]
        if not (edited.exists() and original.exists()):
            missing.append(key)
            continue
        requests.append({"id": key, "text": prompts[entry["edit_type"]].replace("<edit_prompt>", entry["prompt"]),
                         "images": [file_url(original), file_url(edited)]})
    template = json.dumps(prompts, sort_keys=True)
    replies = judge.ask(requests, template, cache_path=cache_path, progress=progress)
    results = {key: text for key, text in replies.items() if text}
    failures = {key: "the judge call failed" for key, text in replies.items() if not text}
    (folder / "result.json").write_text(json.dumps(results, indent=4, ensure_ascii=False), encoding="utf-8")
    average = imgedit_average_scores(results)
    failures.update({key: "no 'Name: <digit>' score line in the reply" for key in results if key not in average})
    (folder / "average_score.json").write_text(json.dumps(average, indent=2), encoding="utf-8")
    typescore = imgedit_type_scores(average, items)
    (folder / "typescore.json").write_text(json.dumps(typescore, indent=2), encoding="utf-8")
    return {"result_json": folder / "result.json", "average": average, "typescore": typescore,
            "scored": len(average), "missing": missing, "failures": failures}


def imgedit_average_scores(results: Mapping[str, Any]) -> dict[str, float]:
    """step1_get_avgscore.py: per key the mean of the "<name>: <digits>" lines, rounded to 2 (keys
    without any are left out)."""
    averages = {}
    for key, text in results.items():
        if not isinstance(text, str):
            continue
        scores = []
        for line in text.splitlines():
            parts = line.strip().split(": ")
            if len(parts) == 2 and parts[1].isdigit():
                scores.append(int(parts[1]))
        if scores:
            averages[key] = round(sum(scores) / len(scores), 2)
    return averages


def imgedit_type_scores(averages: Mapping[str, float], basic_edit) -> dict[str, float]:
    """step2_typescore.py: per edit type the mean of the per-image averages, rounded to 2."""
    items = imgedit_items(basic_edit)
    by_type: dict[str, list[float]] = {}
    for key, score in averages.items():
        if key in items:
            by_type.setdefault(items[key]["edit_type"], []).append(score)
    return {kind: round(sum(scores) / len(scores), 2) for kind, scores in by_type.items() if scores}


def imgedit_overall(typescore: Mapping[str, float]) -> float:
    """The ImgEdit overall score: the mean over its edit types (NaN unless all nine are scored)."""
    if set(typescore) != set(IMGEDIT_TYPES):
        return math.nan
    return sum(typescore[t] for t in IMGEDIT_TYPES) / len(IMGEDIT_TYPES)
