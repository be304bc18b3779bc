"""GEdit-Bench (EN, CN) as Step1X-Edit's `GEdit-Bench/` scores it: the items, the edits laid out as its
scripts expect, VIEScore's SC and PQ prompts sent to the judge, and the per-group statistics.

Nothing here is vendored; the code follows these sources (read at the commits named):

- GEdit-Bench, evaluated by Step1X-Edit's `GEdit-Bench/`: `EVAL.md`, `generate_image_example.py` and
  `test_gedit_score.py` (layout `<save_path>/<model>/fullset/<task_type>/<en|cn>/<key>.png` plus
  `<key>_SRCIMG.png`; per-group CSVs `<model>_<group>_gpt_score.csv` under
  `<save_path>/<model>/<backbone>/eval_results_new/` with its columns, "sementics_score" spelling included),
  `viescore/__init__.py` (the "tie" task: the SC prompt sees source + edited image, the PQ prompt the edited
  image only; SC = min of its scores, PQ = min of its scores, O = sqrt(SC * PQ)), `viescore/utils.py`
  (reply parsing), `viescore/mllm_tools/openai.py` (text first, then JPEG images; max_tokens 1400) and
  `calculate_statistics.py` (per group the mean of SC, PQ and of sqrt(SC * PQ) per item; the average is
  the unweighted mean over the 11 groups). The prompt texts are read from the local checkout's
  `GEdit-Bench/viescore/vie_prompts.py`, not copied here.

Where a reply cannot be parsed the official scripts guess a random score;
here the item is left out and counted in the result's `failures`.
"""
from __future__ import annotations

import ast
import csv
import json
import logging
import math
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import pandas as pd

from editcaption.downstream.bench_judge import BenchmarkJudge, jpeg_url, load_rgb, png_bytes
from editcaption.downstream.step1x import CLONE_HINT, ClusterRequirementError
from editcaption.records import RecordError

log = logging.getLogger(__name__)


GEDIT_GROUPS = ("background_change", "color_alter", "material_alter", "motion_change", "ps_human", "style_change",
                "subject-add", "subject-remove", "subject-replace", "text_change", "tone_transfer")
GEDIT_LANGUAGES = ("en", "cn")
GEDIT_FIELDS = ("task_type", "key", "instruction", "instruction_language", "input_image", "Intersection_exist")
GEDIT_CSV_FIELDS = ("source_image", "edited_image", "instruction", "sementics_score", "quality_score",
                    "intersection_exist", "instruction_language")
GEDIT_PROMPT_PARTS = {"SC": ("_context_no_delimit", "_prompts_0shot_two_image_edit_rule", "_prompts_0shot_tie_rule_SC"),
                      "PQ": ("_context_no_delimit", "_prompts_0shot_rule_PQ")}
VIESCORE_DELIMITER = "||V^=^V||"


# --------------------------------------------------------------------------------------------- GEdit-Bench

def gedit_items(rows: Iterable[Mapping[str, Any]]) -> list[dict]:
    """GEdit-Bench rows (the `train` split of stepfun-ai/GEdit-Bench, loaded by the caller) checked."""
    items, seen = [], set()
    for index, row in enumerate(rows):
        for field in GEDIT_FIELDS:
            if field not in row:
                raise RecordError("missing field", row=index, field=field)
        if row["task_type"] not in GEDIT_GROUPS:
            raise RecordError(f"task_type {row['task_type']!r} not in {GEDIT_GROUPS}", row=index, field="task_type")
        if row["instruction_language"] not in GEDIT_LANGUAGES:
            raise RecordError(f"instruction_language {row['instruction_language']!r} not in {GEDIT_LANGUAGES}",
                              row=index, field="instruction_language")
        if not isinstance(row["key"], str) or not re.fullmatch(r"[A-Za-z0-9._-]+", row["key"]):
            raise RecordError(f"key {row['key']!r} is not a plain file name", row=index, field="key")
        ident = (row["instruction_language"], row["key"])
        if ident in seen:
            raise RecordError("duplicate key for this language", row=index, field="key")
        seen.add(ident)
        items.append(dict(row))
    return items


def prepare_gedit_edits(rows, out_dir: str | Path) -> dict[str, dict[str, Path]]:
    """Inputs for inference.py, per language: `<out_dir>/<lang>/images/<key>.png` (the benchmark's
    input_image) and `<out_dir>/<lang>/prompts.json` ({"<key>.png": instruction})."""
    items = gedit_items(rows)
    jobs = {}
    for lang in GEDIT_LANGUAGES:
        chosen = [item for item in items if item["instruction_language"] == lang]
        if not chosen:
            continue
        images = Path(out_dir) / lang / "images"
        images.mkdir(parents=True, exist_ok=True)
        prompts = {}
        for item in chosen:
            (images / f"{item['key']}.png").write_bytes(png_bytes(item["input_image"], row=item["key"], field="input_image"))
            prompts[f"{item['key']}.png"] = item["instruction"]
        json_path = Path(out_dir) / lang / "prompts.json"
        json_path.write_text(json.dumps(prompts, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        jobs[lang] = {"input_dir": images, "json_path": json_path}
    return jobs


def gedit_image_paths(save_path: str | Path, model_name: str, item: Mapping[str, Any]) -> tuple[Path, Path]:
    """(source, edited) paths where test_gedit_score.py looks for one item."""
    folder = Path(save_path) / model_name / "fullset" / item["task_type"] / item["instruction_language"]
    return folder / f"{item['key']}_SRCIMG.png", folder / f"{item['key']}.png"


def arrange_gedit_results(rows, edited_dirs: Mapping[str, str | Path], save_path: str | Path, model_name: str) -> dict:
    """Put edited images (`<edited_dirs[lang]>/<key>.png`) and sources in GEdit-Bench's evaluation layout.

    Returns {"written": n, "missing": [(lang, key), ...]}: a missing edit is reported, not invented."""
    written, missing = 0, []
    for item in gedit_items(rows):
        lang = item["instruction_language"]
        edited = Path(edited_dirs[lang]) / f"{item['key']}.png" if lang in edited_dirs else None
        if edited is None or not edited.exists():
            missing.append((lang, item["key"]))
            continue
        source_path, edited_path = gedit_image_paths(save_path, model_name, item)
        edited_path.parent.mkdir(parents=True, exist_ok=True)
        source_path.write_bytes(png_bytes(item["input_image"], row=item["key"], field="input_image"))
        edited_path.write_bytes(png_bytes(str(edited), row=item["key"], field="edited_image"))
        written += 1
    if missing:
        log.warning("GEdit-Bench: %d item(s) have no edited image (first: %s)", len(missing), missing[0])
    return {"written": written, "missing": missing}


def gedit_prompts(checkout: str | Path) -> dict[str, str]:
    """The VIEScore "tie" prompts {"SC": ..., "PQ": ...} built as viescore/__init__.py builds them, from the
    checkout's GEdit-Bench/viescore/vie_prompts.py (read, not imported)."""
    path = Path(checkout) / "GEdit-Bench" / "viescore" / "vie_prompts.py"
    if not path.exists():
        raise ClusterRequirementError("GEdit-Bench judging", [f"GEdit-Bench/viescore/vie_prompts.py in a Step1X-Edit "
                                                             f"checkout (step1x_checkout={str(checkout)!r}; {CLONE_HINT})"])
    texts = {}
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    texts[target.id] = node.value.value
    prompts = {}
    for kind, parts in GEDIT_PROMPT_PARTS.items():
        absent = [p for p in parts if p not in texts]
        if absent:
            raise RecordError(f"no {absent} in the VIEScore prompts", file=path, field=absent[0])
        prompts[kind] = "\n".join(texts[p] for p in parts)
    if "<instruction>" not in prompts["SC"]:
        raise RecordError("the SC prompt has no <instruction> placeholder", file=path, field="_prompts_0shot_tie_rule_SC")
    return prompts


def parse_viescore(reply: str) -> list[int] | None:
    """The score list of a VIEScore reply ({"score": [...], "reasoning": ...}, between ||V^=^V|| delimiters,
    bare in the text, or a bare list / number); None when there is none (no guessing)."""
    text = reply or ""
    if text.count(VIESCORE_DELIMITER) == 2:
        text = text.split(VIESCORE_DELIMITER)[1]
    start, end = text.find("{"), text.rfind("}")
    if start != -1 and end > start:
        try:
            scores = json.loads(text[start:end + 1].replace("\n", "")).get("score")
        except (ValueError, AttributeError):
            found = re.search(r"['\"]?score['\"]?\s*:\s*(\[[^\]]*\]|-?\d+)", text)
            scores = json.loads(found.group(1)) if found else None
    else:
        found = re.fullmatch(r"\s*(\[\s*\d+\s*(?:,\s*\d+\s*)*\]|\d+)\s*", text)
        scores = json.loads(found.group(1)) if found else None
    scores = scores if isinstance(scores, list) else [scores] if isinstance(scores, int) else None
    if not scores or not all(isinstance(s, (int, float)) and 0 <= s <= 10 for s in scores):
        return None
    return [int(s) if float(s).is_integer() else s for s in scores]


def score_gedit(rows, save_path: str | Path, model_name: str, *, judge: BenchmarkJudge, checkout: str | Path,
                backbone: str = "gpt4o", cache_path: str | Path | None = None, progress: bool = False) -> dict:
    """Judge every arranged GEdit-Bench item (SC and PQ calls) and write test_gedit_score.py's CSVs.

    Returns {"results_dir", "scored", "skipped_missing_images", "failures": {item: reason}}."""
    prompts = gedit_prompts(checkout)
    requests, meta = [], {}
    skipped = 0
    for item in gedit_items(rows):
        source_path, edited_path = gedit_image_paths(save_path, model_name, item)
        if not (source_path.exists() and edited_path.exists()):
            skipped += 1
            continue
        source = load_rgb(source_path)
        edited = load_rgb(edited_path).resize(source.size)
        base = f"{item['instruction_language']}/{item['task_type']}/{item['key']}"
        requests.append({"id": f"{base}/SC", "text": prompts["SC"].replace("<instruction>", item["instruction"]),
                         "images": [jpeg_url(source), jpeg_url(edited)]})
        requests.append({"id": f"{base}/PQ", "text": prompts["PQ"], "images": [jpeg_url(edited)]})
        meta[base] = (item, source_path, edited_path)
    replies = judge.ask(requests, prompts["SC"] + prompts["PQ"], cache_path=cache_path, progress=progress)
    out_dir = Path(save_path) / model_name / backbone / "eval_results_new"
    out_dir.mkdir(parents=True, exist_ok=True)
    by_group: dict[str, list[dict]] = {group: [] for group in GEDIT_GROUPS}
    failures = {}
    for base, (item, source_path, edited_path) in meta.items():
        sc, pq = parse_viescore(replies[f"{base}/SC"]), parse_viescore(replies[f"{base}/PQ"])
        if sc is None or pq is None:
            failures[base] = "no score in the " + " and ".join(k for k, v in (("SC", sc), ("PQ", pq)) if v is None) + " reply"
            continue
        by_group[item["task_type"]].append({
            "source_image": str(source_path), "edited_image": str(edited_path), "instruction": item["instruction"],
            "sementics_score": min(sc), "quality_score": min(pq), "intersection_exist": bool(item["Intersection_exist"]),
            "instruction_language": item["instruction_language"]})
    combined = []
    for group, group_rows in by_group.items():
        _write_csv(out_dir / f"{model_name}_{group}_gpt_score.csv", group_rows)
        combined += group_rows
    _write_csv(out_dir / f"{model_name}_combined_gpt_score.csv", combined)
    if failures:
        log.warning("GEdit-Bench: %d item(s) without a parsable score (first: %s)", len(failures), next(iter(failures)))
    return {"results_dir": out_dir, "scored": len(combined), "skipped_missing_images": skipped, "failures": failures}


def _write_csv(path: Path, rows: list[dict]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=GEDIT_CSV_FIELDS)
        writer.writeheader()
        writer.writerows(rows)


def gedit_statistics(results_dir: str | Path, model_name: str, language: str, *,
                     intersection_only: bool = False) -> pd.DataFrame:
    """calculate_statistics.py's numbers: per group n, G_SC, G_PQ, G_O (mean of sqrt(SC*PQ) per item), and
    an "average" row (unweighted mean over the 11 groups; NaN when a group has no item)."""
    if language not in GEDIT_LANGUAGES:
        raise ValueError(f"language must be one of {GEDIT_LANGUAGES}, got {language!r}")
    records = []
    for group in GEDIT_GROUPS:
        path = Path(results_dir) / f"{model_name}_{group}_gpt_score.csv"
        if not path.exists():
            raise RecordError("no score CSV for this group", file=path)
        frame = pd.read_csv(path)
        missing = [c for c in GEDIT_CSV_FIELDS if c not in frame.columns]
        if missing:
            raise RecordError("missing column", file=path, field=missing[0])
        frame = frame[frame["instruction_language"] == language]
        if intersection_only:
            frame = frame[frame["intersection_exist"].astype(str).str.lower() == "true"]
        sc, pq = frame["sementics_score"].astype(float), frame["quality_score"].astype(float)
        records.append({"group": group, "n": len(frame), "G_SC": sc.mean(), "G_PQ": pq.mean(),
                        "G_O": (sc * pq).map(math.sqrt).mean()})
    table = pd.DataFrame(records).set_index("group")
    average = {metric: table[metric].mean(skipna=False) for metric in ("G_SC", "G_PQ", "G_O")}
    table.loc["average"] = {"n": int(table["n"].sum()), **average}
    table["n"] = table["n"].astype(int)
    return table
