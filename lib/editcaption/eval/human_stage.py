"""Notebook 06's steps around the human-evaluation contracts of `human`: the sheet to fill, the labels (people's
filled sheets, or simulated annotators when none are given), and what the stage records."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import pandas as pd

from editcaption.eval import human

LABEL_EXAMPLES = ([], [(5, "P1"), (7, "P2")], [(7, "P2"), (2, "P0"), (6, "P1")])  # checklist items found, with tier
MAX_ERRORS_SHOWN = 20


def label_examples(examples: Sequence[Sequence[tuple]] = LABEL_EXAMPLES) -> pd.DataFrame:
    """How a row's label follows from the checklist issues an annotator found: a few worked examples."""
    return pd.DataFrame([{"issues found": list(issues), "label": human.label_from_issues(issues).label,
                          "considered": human.label_from_issues(issues).considered} for issues in examples])


def print_sources(test_pairs, source_dir: str | Path, instructions: Mapping[str, Mapping[str, str]]) -> None:
    print(f"{len(test_pairs)} test pairs; sources from {source_dir}: "
          + ", ".join(f"{name} ({len(texts)})" for name, texts in instructions.items()))


def stage_export(annotation_sheet_dir: str, stage_dir: str | Path, test_pairs, instructions, *, n_pairs: int,
                 seed: int) -> human.BlindExport:
    """The blinded sheet: an earlier export the filled sheets answer (`annotation_sheet_dir`), else this stage's
    annotation/ folder, exported now or reused when it is there."""
    export_dir = Path(annotation_sheet_dir) if annotation_sheet_dir else Path(stage_dir) / "annotation"
    return human.open_export(export_dir, test_pairs, instructions, n_pairs=n_pairs, seed=seed,
                             create=not annotation_sheet_dir)


def shown_pairs(shown: Mapping[str, Mapping[str, str]]) -> list[str]:
    """The pair ids on the sheet, sorted."""
    return sorted({pair_id for texts in shown.values() for pair_id in texts})


def describe_export(export: human.BlindExport, shown: Mapping[str, Mapping[str, str]]) -> pd.DataFrame:
    """Print the sheet's size and files; return its first rows."""
    print(f"sheet: {export.sheet_dir} ({export.n_rows} rows = {len(shown_pairs(shown))} pairs x {len(shown)} models); "
          f"key: {export.key_file}")
    return pd.read_csv(export.sheet_dir / "sheet.csv", keep_default_na=False).head(4)


@dataclass
class CollectedLabels:
    """Who labelled (people or simulated annotators), their files and imports, and the unblinded labels."""

    kind: str  # "human" or "simulated"
    judge: str  # the judge name the tables carry
    files: list  # (annotator, file) pairs
    store_dir: Path
    imports: list  # human.AnnotatorImport per file
    labels: pd.DataFrame

    @property
    def annotators(self) -> list[str]:
        return [name for name, _ in self.files]

    def import_table(self) -> pd.DataFrame:
        """One row per imported file: accepted, rejected and missing rows, where it is stored, repeats."""
        return pd.DataFrame([{"annotator": i.annotator, "file": i.source.name, "accepted": i.accepted,
                              "rejected": i.rejected, "missing": i.missing,
                              "stored": i.stored.name if i.stored else "", "repeat": i.skipped_as_repeat}
                             for i in self.imports])


def collect_labels(export: human.BlindExport, rule_verdicts: Mapping, stage_dir: str | Path, *, import_paths: str,
                   n_annotators: int, noise: float, seed: int, on_error: str) -> CollectedLabels:
    """People's filled sheets (`import_paths`, Label Studio exports split per annotator) or, when none are given,
    simulated annotators (the rule judge's verdicts with `noise`); imported append-only into the stage's store
    (a file imported before is not imported again), then unblinded."""
    annotation = Path(stage_dir) / "annotation"
    if import_paths:
        kind, judge = "human", "human-annotators"
        files = human.expand_labelstudio(human.parse_import_paths(import_paths), annotation / "labelstudio_split")
        store_dir = annotation / "store" / "human"
    else:
        kind, judge = "simulated", "simulated-annotators"
        tag = f"simulated-noise{noise:g}-seed{seed}"
        store_dir = annotation / "store" / tag
        files = human.simulate_annotators(export.sheet_dir, export.key_file, rule_verdicts, annotation / tag,
                                          n_annotators=n_annotators, noise=noise, seed=seed)
    imports = human.import_annotations(files, export.sheet_dir, store_dir, on_error=on_error)
    for error in [e for i in imports for e in i.errors][:MAX_ERRORS_SHOWN]:
        print("skipped:", error)
    labels = human.unblind(store_dir, export.key_file, [name for name, _ in files])
    return CollectedLabels(kind, judge, list(files), store_dir, imports, labels)


def verdict_labels(verdicts: Mapping[tuple[str, str], human.Verdict]) -> dict[tuple[str, str], str]:
    """(model, pair id) -> the verdict's label."""
    return {key: verdict.label for key, verdict in verdicts.items()}


def stage_metrics(collected: CollectedLabels, *, annotator_noise: float, instructions_dir, models: Sequence[str],
                  model_labels: Mapping[str, str], n_pairs: int, export: human.BlindExport, table2: pd.DataFrame,
                  rule_rates: pd.DataFrame, agreement: dict, agreement_with_rule: dict, files: Mapping[str, Any]) -> dict:
    """What notebook 06 writes to metrics.json: who labelled and what was imported, table 2, the rule judge's
    rates beside it, and the agreement between annotators and with the rule judge."""
    return {
        "annotator_kind": collected.kind, "judge": collected.judge, "annotators": collected.annotators,
        "annotator_noise": annotator_noise if collected.kind == "simulated" else None,
        "instructions_dir": str(instructions_dir), "models": [model_labels.get(m, m) for m in models],
        "n_pairs": n_pairs, "n_sheet_rows": export.n_rows,
        "n_labels": len(collected.labels), "sheet_dir": str(export.sheet_dir), "key_file": str(export.key_file),
        "imports": [{"annotator": i.annotator, "source": str(i.source), "accepted": i.accepted, "rejected": i.rejected,
                     "missing": i.missing, "stored": str(i.stored) if i.stored else None, "repeat": i.skipped_as_repeat,
                     "errors": [str(e) for e in i.errors]}
                    for i in collected.imports],
        "table2": human.table2_dict(table2), "rule_judge_rates": rule_rates.round(4).to_dict(orient="index"),
        "agreement": agreement, "agreement_with_rule": agreement_with_rule,
        "files": {k: str(v) for k, v in files.items()},
    }
