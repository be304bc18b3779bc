"""Human evaluation (paper §5.2.1, appendix A, table 2): blinded sheets, validated imports, table 2, agreement.

- Appendix A's checklist is data (`annotation.CHECKLIST` for the items and their levels, `GUIDE` for what
  each item means at each level), and `label_from_issues` is the hierarchical rule: an item's label is its
  most severe level; once a P0 is found, P1/P2 are not considered.
- `export_blinded` writes one sheet row per pair x model, shuffled, with the model name replaced by a random
  per-row key; the key file (`blinding_key.csv`) lies next to the sheet folder, never inside it.
- `import_annotations` runs every filled file (people's, or the simulated annotators') through
  `annotation.import_sheet` and refuses a second label for an item by the same annotator; imports append.
- `unblind` maps stored labels back to models through the key file; `table2_rows` gives Correct/P0/P1/P2
  rates in percent with bootstrap CIs; `cohen_kappa` / `fleiss_kappa` / `agreement` measure agreement.
- `judge_verdicts` + `simulate_annotators` stand in for people on CPU runs: SIMULATED ANNOTATORS that
  label from the rule judge's error tags (mapped to checklist items by `issues_from_judge`) with
  per-annotator noise; their files go through `import_annotations` like people's.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple, Sequence

import numpy as np
import pandas as pd
from statsmodels.stats import inter_rater

from editcaption import annotation
from editcaption.annotation import CHECKLIST, HUMAN_LABELS
from editcaption.eval import stats
from editcaption.eval.llm_judge import read_instructions as read_jsonl
from editcaption.records import RecordError
from editcaption.world.rule_judge import RuleJudge

KIND = "evaluation"
SIMULATED = "simulated-annotator"
LEVELS = ("P0", "P1", "P2")
METRICS = {"correct": "Correct", "P0": "P0", "P1": "P1", "P2": "P2"}  # label -> table 2 column
KEY_FILE = "blinding_key.csv"
KEY_COLUMNS = ("key", "id", "model")
SHEET_FOLDER = "sheet"

# Appendix A, table 6, in our words: (item, level) -> (scope, what the annotator looks for).
GUIDE = {
    (1, "P0"): ("subject", "the text to write or change on the main subject is wrong, missing or garbled"),
    (1, "P1"): ("background", "the text on a background element is wrong, missing or garbled"),
    (2, "P0"): ("subject", "the main edit or one of its attributes (colour, shape, material, style, quantity) is "
                           "wrong, or is stated in a way the images cannot confirm"),
    (2, "P1"): ("non-subject", "a secondary edit or attribute (a small area) is wrong"),
    (3, "P0"): ("subject", "the main edit or an attribute it needs is missing (no add/remove, no colour or place "
                           "of an added object, an ambiguous target, add+remove where replace is meant)"),
    (3, "P1"): ("non-subject", "a secondary edit (a small area) is missing"),
    (4, "P0"): ("scene", "shooting angle, orientation, distance or occlusion is wrong or missing (left/right "
                         "swapped, a mirror or zoom left out); same scene only"),
    (5, "P1"): ("global", "a change of lighting, tone, brightness or saturation is wrong or missing"),
    (6, "P1"): ("wording", "the instruction holds something only the target image shows (target leak)"),
    (7, "P2"): ("wording", "repeated, contradictory or empty wording"),
    (8, "P2"): ("other", "any other minor problem, e.g. describing an edit between two identical images"),
}


class Issue(NamedTuple):
    """One problem an annotator found: a table-6 checklist item filed under one of its levels."""

    item: int
    level: str


class Verdict(NamedTuple):
    """An item's label under the hierarchical rule, the issues that decided it, and the checklist item to file."""

    label: str
    considered: tuple[Issue, ...]
    checklist_id: str


def check_issue(issue: Issue | tuple) -> Issue:
    """The issue, or a ValueError when its item is not in table 6 or is not filed under that level."""
    item, level = issue
    if item not in CHECKLIST:
        raise ValueError(f"checklist item {item!r} is not in table 6 (items {sorted(CHECKLIST)})")
    if level not in CHECKLIST[item][1]:
        raise ValueError(f"checklist item {item} ({CHECKLIST[item][0]}) is filed under "
                         f"{'/'.join(CHECKLIST[item][1])}, not {level!r}")
    return Issue(item, level)


def label_from_issues(issues: Iterable[Issue | tuple]) -> Verdict:
    """The hierarchical rule: no issue -> correct; otherwise the most severe level found. A P0 ends the
    item (P1/P2 issues are not considered), a P1 outranks P2. The checklist item filed is the lowest-
    numbered considered one."""
    found = sorted({check_issue(i) for i in issues}, key=lambda i: (LEVELS.index(i.level), i.item))
    if not found:
        return Verdict("correct", (), "")
    level = found[0].level
    considered = tuple(i for i in found if i.level == level)
    return Verdict(level, considered, str(considered[0].item))


def checklist_table() -> pd.DataFrame:
    """Table 6 as a data frame: item, level, defect, scope, what to look for."""
    rows = [{"item": item, "level": level, "defect": CHECKLIST[item][0], "scope": scope, "look for": text}
            for (item, level), (scope, text) in GUIDE.items()]
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------- rule judge -> issues

_GLOBAL_TONE_OPS = ("tone",)


def issues_from_judge(errors: Sequence[Mapping[str, Any]], changes: Sequence[Mapping[str, Any]]) -> list[Issue]:
    """Map the rule judge's error tags (`RuleJudge.score(...)["errors"]`) to table-6 issues.

    text ops -> item 1; viewpoint errors and P0 orientation errors -> item 4; a missing tone/brightness
    change, or a global attribute change the pair does not show, at P1 -> item 5; other omissions ("not
    described", "not stated") -> item 3; vague wording, repeats and no-ops (the P2 tags) -> item 7; every other
    wrong, reversed or unsupported statement -> item 2."""
    issues = []
    for error in errors:
        level, etype, reason = error["severity"], error["type"], error.get("reason", "")
        index = error.get("change_index")
        op = changes[index]["op"] if index is not None and 0 <= index < len(changes) else ""
        omission = "not described" in reason or "not stated" in reason
        if level == "P2":
            item = 7
        elif op == "text":
            item = 1
        elif etype == "viewpoint" or (etype == "orientation" and level == "P0"):
            item, level = 4, "P0"
        elif level == "P1" and ((omission and op in _GLOBAL_TONE_OPS) or (
                error.get("kind") == "unsupported" and "global attribute" in reason)):
            item = 5
        elif omission:
            item = 3
        else:
            item = 2
        issues.append(check_issue(Issue(item, level)))
    return issues


def judge_verdicts(pairs, instructions: Mapping[str, Mapping[str, str]], *, judge=None) -> dict[tuple[str, str], Verdict]:
    """(pair id, model) -> the rule judge's verdict under the hierarchical rule, for the pairs with structured
    changes (synthetic pairs). An empty instruction omits the main edit (item 3, P0)."""

    judge = judge or RuleJudge()
    changes = {row["id"]: row["changes"] for row in pairs.select_columns(["id", "changes"]).to_list()}
    verdicts = {}
    for model, texts in instructions.items():
        for pair_id, text in texts.items():
            if not changes.get(pair_id):
                continue
            if not text.strip():
                verdicts[(pair_id, model)] = label_from_issues([Issue(3, "P0")])
                continue
            errors = judge.score(changes[pair_id], text)["errors"]
            verdicts[(pair_id, model)] = label_from_issues(issues_from_judge(errors, changes[pair_id]))
    return verdicts


# ------------------------------------------------------------------------------------ instructions

def read_instructions(path: str | Path) -> dict[str, str]:
    """id -> instruction from a JSONL file of {"id", "instruction"} lines (empty instructions kept: they are
    P0 items); a bad line raises RecordError naming the file, line and field."""

    return read_jsonl(path, allow_empty=True)[0]


def load_sources(folder: str | Path, sources: str | Sequence[str] = "") -> dict[str, dict[str, str]]:
    """source name -> (id -> instruction) for `<folder>/<source>.jsonl`; every file when `sources` is empty."""
    folder = Path(folder)
    names = [s.strip() for s in sources.split(",") if s.strip()] if isinstance(sources, str) else list(sources)
    if not names:
        names = sorted(p.stem for p in folder.glob("*.jsonl"))
    if not names:
        raise RecordError("no <source>.jsonl instruction files here", file=folder)
    return {name: read_instructions(folder / f"{name}.jsonl") for name in names}


def select_pair_ids(pair_ids: Sequence[str], instructions: Mapping[str, Mapping[str, str]], n: int, *,
                    seed: int = 0) -> list[str]:
    """Ids every source has an instruction for, in pair order; a seeded sample of `n` of them (0: all)."""
    common = [i for i in pair_ids if all(i in texts for texts in instructions.values())]
    if not common:
        raise RecordError(f"no pair has an instruction from every source ({sorted(instructions)})")
    if 0 < n < len(common):
        keep = set(random.Random(f"human-eval-{seed}").sample(common, n))
        common = [i for i in common if i in keep]
    return common


# ------------------------------------------------------------------------------------------ export

@dataclass(frozen=True)
class BlindExport:
    """Where a blinded export lies: the sheet folder (given to annotators) and the key file (kept back)."""

    sheet_dir: Path
    key_file: Path
    paths: dict
    n_rows: int


def blind_rows(pair_ids: Sequence[str], instructions: Mapping[str, Mapping[str, str]], *,
               seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(sheet rows {id, model: blind key, instruction}, key rows {key, id, model}), shuffled with `seed`.
    Every row gets its own random key, so rows of one model cannot be told apart by their key."""
    rng = random.Random(f"blind-{seed}")
    entries = [(pair_id, model) for pair_id in pair_ids for model in instructions]
    rng.shuffle(entries)
    keys: set[str] = set()
    sheet, key_rows = [], []
    for pair_id, model in entries:
        key = f"k{rng.getrandbits(40):010x}"
        while key in keys:
            key = f"k{rng.getrandbits(40):010x}"
        keys.add(key)
        sheet.append({"id": pair_id, "model": key, "instruction": instructions[model][pair_id]})
        key_rows.append({"key": key, "id": pair_id, "model": model})
    return sheet, key_rows


def export_blinded(pairs, instructions: Mapping[str, Mapping[str, str]], out_dir: str | Path, *,
                   pair_ids: Sequence[str] | None = None, seed: int = 0,
                   formats: Sequence[str] = ("csv", "jsonl", "labelstudio")) -> BlindExport:
    """Write the blinded evaluation sheet under `out_dir/sheet/` (annotation.export_sheet: CSV, JSONL, Label
    Studio tasks + labelling config, images) and the key under `out_dir/blinding_key.csv`.

    The sheet's `model` column holds the blind key. Refuses to write where a sheet or key already is."""
    out_dir = Path(out_dir)
    key_file = out_dir / KEY_FILE
    if key_file.exists():
        raise RecordError("a blinding key is already here; export to a new folder", file=key_file)
    ids = list(pair_ids) if pair_ids is not None else select_pair_ids(pairs["id"], instructions, 0)
    sheet, key_rows = blind_rows(ids, instructions, seed=seed)
    position = {pair_id: i for i, pair_id in enumerate(pairs["id"])}
    missing = [i for i in ids if i not in position]
    if missing:
        raise RecordError(f"{len(missing)} pair ids are not among the pairs, e.g. {missing[0]!r}", field="id")
    images = pairs.select(sorted({position[i] for i in ids})).select_columns(["id", "source_image", "target_image"])
    by_id = {row["id"]: row for row in images}
    rows = [{**row, "source_image": by_id[row["id"]]["source_image"], "target_image": by_id[row["id"]]["target_image"]}
            for row in sheet]
    paths = annotation.export_sheet(KIND, rows, out_dir / SHEET_FOLDER, formats=formats)
    with open(key_file, "x", encoding="utf-8", newline="") as out:  # "x": never replaces a key
        writer = csv.DictWriter(out, fieldnames=KEY_COLUMNS)
        writer.writeheader()
        writer.writerows(key_rows)
    return BlindExport(out_dir / SHEET_FOLDER, key_file, paths, len(rows))


def _sheet_file(sheet_dir: Path) -> Path:
    return sheet_dir / "sheet.jsonl" if (sheet_dir / "sheet.jsonl").exists() else sheet_dir / "sheet.csv"


def sheet_instructions(export: BlindExport) -> dict[str, dict[str, str]]:
    """model -> (pair id -> instruction) as the blinded sheet shows them, un-blinded through the key."""
    key = read_key(export.key_file)
    out: dict[str, dict[str, str]] = {}
    for number, row in enumerate(annotation.read_sheet(_sheet_file(export.sheet_dir)), start=1):
        model = key.get((row["id"], row["model"]))
        if model is None:
            raise RecordError("sheet row not in the blinding key", file=_sheet_file(export.sheet_dir), row=number,
                              field="model")
        out.setdefault(model, {})[row["id"]] = row["instruction"]
    return out


def open_export(export_dir: str | Path, pairs, instructions: Mapping[str, Mapping[str, str]], *, n_pairs: int = 0,
                seed: int = 0, create: bool = True) -> BlindExport:
    """The blinded export in `export_dir`: written on first use (a seeded sample of `n_pairs` pairs that every
    source covers), reused afterwards, when it must show the same models and the same instructions."""
    export_dir = Path(export_dir)
    key_file = export_dir / KEY_FILE
    if not key_file.exists():
        if not create:
            raise RecordError(f"no blinded export here ({KEY_FILE} missing)", file=export_dir)
        ids = select_pair_ids(list(pairs["id"]), instructions, n_pairs, seed=seed)
        return export_blinded(pairs, instructions, export_dir, pair_ids=ids, seed=seed)
    sheet_dir = export_dir / SHEET_FOLDER
    export = BlindExport(sheet_dir, key_file, {p.name: p for p in sorted(sheet_dir.glob("*")) if p.is_file()},
                         len(read_key(key_file)))
    shown = sheet_instructions(export)
    if set(shown) != set(instructions):
        raise RecordError(f"these sheets show models {sorted(shown)}, not {sorted(instructions)}; "
                          "export to a new folder (another run_name)", file=key_file)
    for model, texts in shown.items():
        changed = [i for i, text in texts.items() if instructions[model].get(i) != text]
        if changed:
            raise RecordError(f"{len(changed)} instructions of {model!r} differ from the exported sheet (e.g. pair "
                              f"{changed[0]!r}); labels answer the sheet: export to a new folder", file=key_file)
    return export


def read_key(path: str | Path) -> dict[tuple[str, str], str]:
    """(pair id, blind key) -> model name from a key file; bad rows raise RecordError."""
    path = Path(path)
    if not path.is_file():
        raise RecordError("no such file (the blinding key written next to the sheet folder)", file=path)
    reader = csv.DictReader(io.StringIO(path.read_text(encoding="utf-8")))
    for column in KEY_COLUMNS:
        if column not in (reader.fieldnames or []):
            raise RecordError("missing column", file=path, row=1, field=column)
    key: dict[tuple[str, str], str] = {}
    for line, row in enumerate(reader, start=2):
        for column in KEY_COLUMNS:
            if not row[column]:
                raise RecordError("empty", file=path, row=line, field=column)
        if (row["id"], row["key"]) in key:
            raise RecordError(f"key {row['key']!r} appears twice for pair {row['id']!r}", file=path, row=line, field="key")
        key[(row["id"], row["key"])] = row["model"]
    return key


# ------------------------------------------------------------------------------------------ import

def parse_import_paths(spec: str | Sequence[str]) -> list[tuple[str, Path]]:
    """"alice=a.csv, b.json" -> [("alice", a.csv), ("b", b.json)]: an annotator name before '=', else the stem."""
    entries = [s.strip() for s in spec.split(",")] if isinstance(spec, str) else [str(s).strip() for s in spec]
    out = []
    for entry in filter(None, entries):
        name, _, path = entry.rpartition("=") if "=" in entry else ("", "", entry)
        path = Path(path.strip())
        out.append((name.strip() or path.stem, path))
    names = [n for n, _ in out]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"annotator {twice[0]!r} is named for two files; give each file its own name=path")
    return out


def _stored_by(store_dir: Path, annotator: str) -> dict:
    """key -> the import file where `annotator` already labelled it."""
    return {key: row["import"] for key, row in annotation.merged_view(KIND, store_dir, annotator=annotator).items()}


def _already_imported(store_dir: Path, annotator: str, digest: str) -> bool:
    manifest = store_dir / KIND / "manifest.jsonl"
    if not manifest.exists():
        return False
    for line in manifest.read_text(encoding="utf-8").splitlines():
        entry = json.loads(line)
        if entry.get("annotator") == annotator and entry.get("sha256") == digest:
            return True
    return False


@dataclass
class AnnotatorImport:
    """One annotator's file: what the import kept and rejected, or that the same file was imported before."""

    annotator: str
    source: Path
    accepted: int
    rejected: int
    missing: int
    stored: Path | None
    skipped_as_repeat: bool
    errors: list


def import_annotations(files: Sequence[tuple[str, str | Path]], sheet_dir: str | Path, store_dir: str | Path, *,
                       on_error: str = "raise") -> list[AnnotatorImport]:
    """Import each (annotator, filled file) against the exported sheet into the append-only store.

    Row errors (unknown key, label outside the checklist, two labels for one item in the file, an item the
    annotator already labelled in an earlier import) name file, row and field. Importing the very same
    file again for the same annotator is a no-op, so a rerun of the notebook imports nothing twice."""
    store_dir = Path(store_dir)
    results = []
    for annotator_name, path in files:
        path = Path(path)
        if not path.is_file():
            raise RecordError(f"no such file (the filled sheet of annotator {annotator_name!r})", file=path)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if _already_imported(store_dir, annotator_name, digest):
            results.append(AnnotatorImport(annotator_name, path, 0, 0, 0, None, True, []))
            continue
        earlier = _stored_by(store_dir, annotator_name)
        refuse = {key: f"{annotator_name!r} already labelled this item (in {where}); imports append, they never "
                       "overwrite: leave it out of this file" for key, where in earlier.items()}
        result = annotation.import_sheet(KIND, path, expected=sheet_dir, store_dir=store_dir, on_error=on_error,
                                         annotator=annotator_name, refuse=refuse)
        results.append(AnnotatorImport(annotator_name, path, result.n_accepted, result.n_rejected, len(result.missing),
                                       result.stored, False, result.errors))
    return results


def split_labelstudio_export(path: str | Path, out_dir: str | Path, *, prefix: str = "labelstudio") -> list[tuple[str, Path]]:
    """Split a Label Studio export holding several annotators' work into one export per annotator
    (`completed_by`: an id, or a dict with its email), named `<prefix>-<annotator>`, ready for
    `import_annotations`. A task with two non-cancelled annotations by the same annotator raises
    RecordError naming the task."""
    path, out_dir = Path(path), Path(out_dir)
    try:
        tasks = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise RecordError(f"not a readable Label Studio export: {err}", file=path) from err
    if not isinstance(tasks, list):
        raise RecordError("expected a Label Studio export: a JSON list of tasks", file=path)
    per: dict[str, list[dict]] = {}
    for number, task in enumerate(tasks, start=1):
        seen: set[str] = set()
        for item in (task.get("annotations") or []) if isinstance(task, dict) else []:
            if not isinstance(item, dict) or item.get("was_cancelled"):
                continue
            who = item.get("completed_by")
            who = str(who.get("email") or who.get("id")) if isinstance(who, dict) else str(who)
            if who in seen:
                raise RecordError(f"annotator {who!r} labelled this task twice", file=path, row=number,
                                  field="annotations")
            seen.add(who)
            per.setdefault(who, []).append({**task, "annotations": [item]})
    out = []
    for who, annotator_tasks in sorted(per.items()):
        name = f"{prefix}-" + "".join(c if c.isalnum() or c in "-_." else "_" for c in who)
        target = out_dir / f"{name}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(annotator_tasks, ensure_ascii=False, indent=1), encoding="utf-8")
        out.append((name, target))
    return out


def expand_labelstudio(files: Sequence[tuple[str, Path]], split_dir: str | Path) -> list[tuple[str, Path]]:
    """Each Label Studio export (.json) holding several annotators becomes one file per annotator, named
    `<name>-<annotator>`; other files, and exports of one annotator, are kept as they are."""
    out = []
    for name, path in files:
        if Path(path).suffix.lower() != ".json":
            out.append((name, Path(path)))
            continue
        parts = split_labelstudio_export(path, Path(split_dir) / name, prefix=name)
        out += parts if len(parts) > 1 else [(name, Path(path))]
    return out


def unblind(store_dir: str | Path, key_file: str | Path, annotators: Sequence[str]) -> pd.DataFrame:
    """The stored labels of `annotators` with the model names restored: id, model, annotator, label,
    checklist_id (one row per item and annotator: that annotator's newest import wins)."""
    key = read_key(key_file)
    rows = []
    for name in annotators:
        for (pair_id, blind), row in annotation.merged_view(KIND, store_dir, annotator=name).items():
            if (pair_id, blind) not in key:
                raise RecordError(f"stored row ({pair_id!r}, {blind!r}) is not in the blinding key: the filled sheet "
                                  "answers another export", file=key_file, field="key")
            rows.append({"id": pair_id, "model": key[(pair_id, blind)], "annotator": name, "label": row["label"],
                         "checklist_id": row.get("checklist_id", "")})
    return pd.DataFrame(rows, columns=["id", "model", "annotator", "label", "checklist_id"])


# ----------------------------------------------------------------------------------- simulated people

def annotator_names(n: int) -> list[str]:
    """simulated-annotator-1 .. -n: the simulated annotators are named as such."""
    return [f"{SIMULATED}-{k}" for k in range(1, n + 1)]


def simulate_annotators(sheet_dir: str | Path, key_file: str | Path, verdicts: Mapping[tuple[str, str], Verdict],
                        out_dir: str | Path, *, n_annotators: int = 3, noise: float = 0.1,
                        seed: int = 0) -> list[tuple[str, Path]]:
    """SIMULATED ANNOTATORS (not human work): each fills the blinded sheet from the rule judge's verdicts
    (`judge_verdicts`) and, with probability `noise` per row, gives another label (its own seed per
    annotator). Returns (annotator, filled CSV) for `import_annotations`, the path people's files take."""
    if n_annotators < 1:
        raise ValueError(f"n_annotators must be >= 1, got {n_annotators}")
    sheet_dir = Path(sheet_dir)
    sheet = annotation.read_sheet(_sheet_file(sheet_dir))
    key = read_key(key_file)
    truth = {}
    for number, row in enumerate(sheet, start=1):
        model = key.get((row["id"], row["model"]))
        if model is None or (row["id"], model) not in verdicts:
            raise RecordError("no rule-judge verdict for this sheet row", file=sheet_dir, row=number, field="model")
        verdict = verdicts[(row["id"], model)]
        truth[(row["id"], row["model"])] = {"label": verdict.label, "checklist_id": verdict.checklist_id}
    files = []
    for k, name in enumerate(annotator_names(n_annotators), start=1):
        filled = annotation.simulated_annotator(KIND, sheet, truth=truth, residual_error_rate=noise,
                                                seed=seed * 1000 + k)
        files.append((name, annotation.write_sheet(KIND, filled, Path(out_dir) / f"{name}.csv")))
    return files


# ------------------------------------------------------------------------------------------ table 2

def label_rates(labels: pd.DataFrame) -> pd.DataFrame:
    """Per (model, id), the share of that item's labels equal to each label (columns correct, P0, P1, P2)."""
    if labels.empty:
        raise ValueError("no labels")
    bad = sorted(set(labels["label"]) - set(HUMAN_LABELS))
    if bad:
        raise ValueError(f"labels {bad} are not in {HUMAN_LABELS}")
    counts = pd.crosstab([labels["model"], labels["id"]], labels["label"])
    counts = counts.reindex(columns=list(HUMAN_LABELS), fill_value=0)
    return counts.div(counts.sum(axis=1), axis=0)


def source_order(sources: Iterable[str], ours: Sequence[str]) -> list[str]:
    """External sources first (in their order), then our checkpoints in the order of `ours`."""
    sources = list(sources)
    return [s for s in sources if s not in ours] + [s for s in ours if s in sources]


def table2_rows(labels: pd.DataFrame, *, judge: str, data: str, benchmark: str = "synthetic-test",
                models: Sequence[str] | None = None, names: Mapping[str, str] | None = None, n_boot: int = 2000,
                seed: int = 0) -> pd.DataFrame:
    """Table 2 in the long format (records.LONG_COLUMNS): per model the Correct, P0, P1 and P2
    rates in percent with a 95 % bootstrap CI over items. An item labelled by several annotators counts
    once, with each label weighted by the share of its annotators who gave it, so the four rates sum to 100.
    `models` orders the rows; `names` maps a source to its row name (e.g. sft -> SFT)."""
    shares = label_rates(labels)
    order = list(models) if models is not None else list(dict.fromkeys(labels["model"]))
    rows = []
    for model in order:
        if model not in shares.index.get_level_values(0):
            continue
        per_item = shares.loc[model]
        for label, metric in METRICS.items():
            value, low, high = stats.bootstrap_ci(per_item[label].to_numpy() * 100, n_boot=n_boot, seed=seed)
            rows.append({"table": "table2", "model": (names or {}).get(model, model), "benchmark": benchmark,
                         "metric": metric, "value": value, "low": low, "high": high, "judge": judge, "data": data})
    return pd.DataFrame(rows)


def table2_dict(rows: pd.DataFrame) -> dict:
    """model -> metric -> {value, low, high} from table-2 long rows (for metrics.json)."""
    return {model: {r.metric: {"value": r.value, "low": r.low, "high": r.high} for r in group.itertuples()}
            for model, group in rows.groupby("model", sort=False)}


def verdict_rates(verdicts: Mapping[tuple[str, str], Verdict | str]) -> pd.DataFrame:
    """Per model, the share (percent) of its items with each label: columns Correct, P0, P1, P2."""
    labels = pd.DataFrame([{"model": model, "label": v.label if isinstance(v, Verdict) else v}
                           for (_, model), v in verdicts.items()], columns=["model", "label"])
    if labels.empty:
        return pd.DataFrame(columns=list(METRICS.values()), dtype=float)
    shares = labels.groupby("model", sort=False)["label"].value_counts(normalize=True).mul(100).unstack(fill_value=0)
    return shares.reindex(columns=list(HUMAN_LABELS), fill_value=0.0).rename(columns=METRICS)


# ---------------------------------------------------------------------------------------- agreement

def cohen_kappa(a: Sequence, b: Sequence) -> float:
    """Cohen's kappa of two raters over the same items (statsmodels `cohens_kappa` of their contingency
    table); NaN when chance agreement is 1 (both raters use one and the same label throughout)."""
    a, b = np.asarray(a, dtype=object), np.asarray(b, dtype=object)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"cohen_kappa needs two equal, non-empty label lists (got {a.shape} and {b.shape})")
    categories = sorted(set(a) | set(b), key=str)
    if len(categories) < 2:
        return float("nan")
    index = {c: k for k, c in enumerate(categories)}
    table = np.zeros((len(categories), len(categories)))
    np.add.at(table, ([index[x] for x in a], [index[y] for y in b]), 1)
    return float(inter_rater.cohens_kappa(table, return_results=False))


def fleiss_kappa(counts) -> float:
    """Fleiss' kappa (statsmodels) from an items x categories matrix of rater counts (the same number of
    raters per item); NaN when every rating falls in one category."""
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ValueError("fleiss_kappa needs an items x categories count matrix")
    raters = counts.sum(axis=1)
    if not np.all(raters == raters[0]) or raters[0] < 2:
        raise ValueError(f"every item needs the same number (>= 2) of ratings, got {sorted(set(raters.tolist()))}")
    if np.count_nonzero(counts.sum(axis=0)) < 2:
        return float("nan")
    return float(inter_rater.fleiss_kappa(counts, method="fleiss"))


def agreement(labels: pd.DataFrame, *, n_boot: int = 500, seed: int = 0) -> dict:
    """Inter-annotator agreement over the items every annotator labelled: Cohen's kappa for two annotators,
    Fleiss' kappa for more (each with a bootstrap CI over items), raw agreement, and Cohen's kappa for
    every pair of annotators."""
    wide = labels.pivot_table(index=["model", "id"], columns="annotator", values="label", aggfunc="first")
    names = list(wide.columns)
    common = wide.dropna()
    out = {"annotators": names, "n_items": int(len(common)), "n_items_any": int(len(wide))}
    if len(names) < 2 or common.empty:
        return {**out, "method": "none", "kappa": None, "low": None, "high": None, "percent_agreement": None,
                "pairwise_cohen": {}}
    matrix = common.to_numpy()
    pairwise = {f"{x} | {y}": cohen_kappa(common[x], common[y]) for x, y in combinations(names, 2)}
    if len(names) == 2:
        method = "cohen"

        def statistic(m):
            return cohen_kappa(m[:, 0], m[:, 1])
    else:
        method = "fleiss"
        index = {label: k for k, label in enumerate(HUMAN_LABELS)}
        matrix = np.stack([np.bincount([index[v] for v in row], minlength=len(HUMAN_LABELS)) for row in matrix])
        statistic = fleiss_kappa
    kappa = statistic(matrix)
    low, high = stats.bootstrap_statistic(lambda rows: statistic(matrix[rows]), len(matrix), n_boot=n_boot, seed=seed)
    unanimous = float(np.mean([len(set(row)) == 1 for row in common.to_numpy()]))
    return {**out, "method": method, "kappa": kappa, "low": low, "high": high, "percent_agreement": unanimous,
            "pairwise_cohen": pairwise}


def agreement_with(labels: pd.DataFrame, reference: Mapping[tuple[str, str], str]) -> dict[str, float]:
    """Cohen's kappa of each annotator against reference labels ((pair id, model) -> label), e.g. the rule judge."""
    out = {}
    for name, group in labels.groupby("annotator", sort=False):
        ref = [reference.get((i, m)) for i, m in zip(group["id"], group["model"])]
        keep = [k for k, r in enumerate(ref) if r is not None]
        out[str(name)] = cohen_kappa(group["label"].to_numpy()[keep], np.asarray(ref, dtype=object)[keep]) if keep \
            else float("nan")
    return out


def pairwise_matrix(labels: pd.DataFrame) -> pd.DataFrame:
    """Cohen's kappa for every pair of annotators (1 on the diagonal), over the items both labelled."""
    wide = labels.pivot_table(index=["model", "id"], columns="annotator", values="label", aggfunc="first")
    names = list(wide.columns)
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for x, y in combinations(names, 2):
        both = wide[[x, y]].dropna()
        matrix.loc[x, y] = matrix.loc[y, x] = cohen_kappa(both[x], both[y]) if len(both) else float("nan")
    return matrix
