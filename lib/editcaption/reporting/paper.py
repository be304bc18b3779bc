"""The paper's published numbers (tables 1–5 and 11) as data, rendered as published and beside this run's numbers."""
from __future__ import annotations

import json
import math
import re
from importlib import resources
from pathlib import Path
from typing import Mapping, Sequence

import pandas as pd

from editcaption import records
from editcaption.records import RecordError
from editcaption.reporting import tables

PAPER_TABLES = ("table1", "table2", "table3", "table4", "table5", "table11")
PAPER_COLUMNS = ("table", "group", "model", "benchmark", "metric", "value", "text")
RESULTS_PACKAGE = "editcaption.reporting"
RESULTS_FOLDER = "paper_results"

CAPTIONS = {
    "table1": "Table 1 (paper): the evaluation datasets.",
    "table2": "Table 2 (paper): human evaluation on 400 in-house pairs, share of instructions per verdict.",
    "table3": "Table 3 (paper): automatic evaluation, S = 0.4 Acc + 0.4 Comp + 0.2 Clar on a 0-5 scale.",
    "table4": "Table 4 (paper): HAE-DPO margin ablation, Qwen3-VL-235B-A22B with the SFT stage fixed.",
    "table5": "Table 5 (paper): Step1X-Edit fine-tuned on 1M triplets per captioner, GPT-4.1 overall ratings.",
    "table11": "Table 11 (paper): training hyperparameters of the SFT and HAE-DPO stages.",
}
ROW_LABELS = {"table1": "Dataset", "table2": "Model", "table3": "Model", "table4": "Components", "table5": "Model",
              "table11": "Hyperparameter"}

# Where a stage of this run leaves each table in long format (records.LONG_COLUMNS).
STAGE_FILES = {"table2": ("06_human_evaluation", "table2_long.csv"),
               "table3": ("05_automatic_evaluation", "table3_long.csv"),
               "table4": ("05_automatic_evaluation", "table4_long.csv"),
               "table5": ("07_downstream_editing", "table5_long.csv")}

# Our model names (normalised: lower case, '_' and spaces as '-'; tried again without a "(...)" note) -> the role
# they play in the paper; names used by notebooks 05-07 (eval.automatic.SOURCE_LABELS, downstream CAPTIONERS) included.
MODEL_ALIASES = {
    "base": ("base", "untrained", "base-model", "base-vlm", "qwen3-vl"),
    "sft": ("sft",),
    "dpo": ("dpo", "sft+dpo", "standard-dpo"),
    "st_only": ("st-only", "severity-type", "+s·c-only"),
    "h_only": ("h-only", "hardness", "+h-only"),
    "hae": ("hae", "hae-dpo", "sft+hae-dpo", "sft+hae", "editcaption"),
    "no_finetune": ("none", "no-finetune", "not-finetuned", "pretrained", "step1x-edit"),
}
# Role -> the paper's row in each table; {scale} is the paper model size this run stands in for.
PAPER_ROWS = {
    "table2": {"base": "Qwen3-VL-{scale} (base)", "dpo": "Qwen3-VL-{scale} (SFT+DPO)",
               "hae": "Qwen3-VL-{scale} (SFT+HAE-DPO)"},
    "table3": {"base": "Qwen3-VL-{scale}", "sft": "Qwen3-VL-{scale} (SFT)", "dpo": "Qwen3-VL-{scale} (SFT+DPO)",
               "hae": "Qwen3-VL-{scale} (SFT+HAE-DPO)"},
    "table4": {"dpo": "None (Standard DPO)", "st_only": "Only s_i c(t_i) (severity-type)", "h_only": "Only h_i (hardness)",
               "hae": "HAE-DPO"},
    "table5": {"no_finetune": "Step1X-Edit", "base": "+ Base VLM captioner", "hae": "+ EditCaption (ours)"},
}
PAPER_SCALES = ("32B", "235B-A22B")
# Our benchmark names (normalised; a name also matches when it starts with alias + '-') -> benchmark role.
# The held-out synthetic test split stands where the paper's in-house Eval-400 stands.
BENCHMARK_ALIASES = {
    "eval400": ("eval-400", "eval400", "in-house", "synthetic", "synthetic-test"),
    "hqedit": ("hq-edit", "hqedit"),
    "bytemorph": ("bytemorph", "bytemorph-bench", "bm-bench"),
    "imgedit": ("imgedit", "imgedit-bench"),
    "gedit-en": ("gedit-en", "gedit-bench-en"),
    "gedit-cn": ("gedit-cn", "gedit-bench-cn"),
}
PAPER_BENCHMARKS = {
    "table1": {"eval400": "In-house Test Set", "bytemorph": "ByteMorph-Bench", "hqedit": "HQ-Edit"},
    "table2": {"eval400": "Eval-400"},
    "table3": {"eval400": "Eval-400 (In-house)", "hqedit": "HQ-Edit", "bytemorph": "ByteMorph-Bench"},
    "table4": {"eval400": "Eval-400", "hqedit": "HQ-Edit", "bytemorph": "ByteMorph"},
    "table5": {"imgedit": "ImgEdit", "gedit-en": "GEdit-EN", "gedit-cn": "GEdit-CN"},
}
# Table 11 row -> trainer field per stage; the values are the ones the run trained with (train_metrics' "config").
HYPERPARAMETERS = {
    "SFT": ("02_sft", {"Learning rate": "learning_rate", "Global batch size": "global_batch_size",
                       "Training epochs": "num_train_epochs", "Max sequence length": "max_length",
                       "Learning-rate schedule": "lr_scheduler_type", "Warmup ratio": "warmup_steps",
                       "Gradient clipping": "max_grad_norm", "Precision": "bf16"}),
    "HAE-DPO": ("04_hae_dpo", {"Learning rate": "learning_rate", "Global batch size": "global_batch_size",
                               "Training epochs": "num_train_epochs", "Max sequence length": "max_length",
                               "Learning-rate schedule": "lr_scheduler_type", "Warmup ratio": "warmup_steps",
                               "Gradient clipping": "max_grad_norm", "Precision": "bf16", "DPO β": "beta",
                               "Hardness temperature τ": "hae_tau", "γst,γh": ("hae_gamma_st", "hae_gamma_h")}),
}
STEP_LIMITS = {"num_train_epochs": "max_steps"}
THIS_RUN_ONLY = "This run only"
NOT_RUN = "not run"


# ------------------------------------------------------------------------------------------ the data

def paper_results(table: str | None = None) -> pd.DataFrame:
    """The paper's numbers, long format (table, group, model, benchmark, metric, value, text), rows in the paper's
    order; `value` is a float (NaN where the cell is text), `text` the cell as published. `table` picks one."""
    folder = resources.files(RESULTS_PACKAGE) / RESULTS_FOLDER
    names = [table] if table else [*PAPER_TABLES, "figure2"]
    frames = []
    for name in names:
        source = folder / f"{name}.csv"
        if not source.is_file():
            raise KeyError(f"no published numbers for {name!r}; have {', '.join(PAPER_TABLES)} and figure2")
        with source.open(encoding="utf-8") as f:
            frame = pd.read_csv(f, dtype=str, keep_default_na=False)
        if tuple(frame.columns) != PAPER_COLUMNS:
            raise RecordError(f"columns {list(frame.columns)}, expected {list(PAPER_COLUMNS)}", file=str(source))
        frame["value"] = pd.to_numeric(frame["value"].replace("", math.nan))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _norm(name: str) -> str:
    return re.sub(r"[\s_]+", "-", str(name).strip().lower())


def model_role(name: str) -> str | None:
    """The paper role ('base', 'sft', 'dpo', 'st_only', 'h_only', 'hae', 'no_finetune') of one of our model names."""
    for key in (_norm(name), _norm(re.sub(r"\s*\(.*?\)", "", str(name)))):  # "base (untrained)" also as "base"
        role = next((role for role, aliases in MODEL_ALIASES.items() if key in aliases), None)
        if role:
            return role
    return None


def benchmark_role(name: str) -> str | None:
    """The benchmark role of one of our benchmark names ('eval400', 'hqedit', ...), or None."""
    key = _norm(name)
    for role, aliases in BENCHMARK_ALIASES.items():
        if any(key == a or key.startswith(a + "-") for a in aliases):
            return role
    return None


def paper_row(table: str, our_model: str, scale: str = "235B-A22B") -> str | None:
    """The paper's row label our model stands beside in `table`, or None."""
    if scale not in PAPER_SCALES:
        raise ValueError(f"scale {scale!r}: expected one of {PAPER_SCALES}")
    template = PAPER_ROWS.get(table, {}).get(model_role(our_model) or "")
    return template.format(scale=scale) if template else None


# ------------------------------------------------------------------------------------- as published

def _decimals(text: str) -> int:
    match = re.search(r"\.(\d+)", text)
    return len(match.group(1)) if match else 0


def _column_label(benchmark: str, metric: str, benchmarks: list[str], metrics: list[str]) -> str:
    if len(metrics) == 1 and len(benchmarks) > 1:
        return benchmark
    if len(benchmarks) == 1:
        return metric
    return f"{benchmark} {metric}"


def published_columns(paper: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(benchmark, metric, display label) of a model table's columns, in the paper's order."""
    pairs = list(dict.fromkeys(zip(paper["benchmark"], paper["metric"])))
    benchmarks = list(dict.fromkeys(b for b, _ in pairs))
    metrics = list(dict.fromkeys(m for _, m in pairs))
    return [(b, m, _column_label(b, m, benchmarks, metrics)) for b, m in pairs]


def _rows_with_groups(paper: pd.DataFrame, key: str) -> list[tuple[str, bool]]:
    """(label, is_group_header) in the paper's order: each group's name, then its rows."""
    out: list[tuple[str, bool]] = []
    group = None
    for g, label in dict.fromkeys(zip(paper["group"], paper[key])):
        if g != group and g:
            out.append((g, True))
        group = g
        out.append((label, False))
    return out


def paper_table(table: str) -> pd.DataFrame:
    """The table as the paper prints it: its rows (with the group headings as empty rows), columns and cell texts."""
    paper = paper_results(table)
    if table == "table1":
        cells = {(r.benchmark, r.metric): r.text for r in paper.itertuples()}
        rows = list(dict.fromkeys(paper["benchmark"]))
        columns = list(dict.fromkeys(paper["metric"]))
        data = [[cells.get((b, m), "") for m in columns] for b in rows]
    elif table == "table11":
        rows = list(dict.fromkeys(paper["metric"]))
        columns = ["SFT", "HAE-DPO"]
        cells = {}
        for r in paper.itertuples():
            for stage in (columns if r.model == "both" else [r.model]):
                cells[(r.metric, stage)] = r.text
        data = [[cells.get((h, s), "") for s in columns] for h in rows]
    else:
        spec = published_columns(paper)
        columns = [label for _, _, label in spec]
        cells = {(r.model, r.benchmark, r.metric): r.text for r in paper.itertuples()}
        rows, data = [], []
        for label, heading in _rows_with_groups(paper, "model"):
            rows.append(label)
            data.append(["" if heading else cells.get((label, b, m), "") for b, m, _ in spec])
    return pd.DataFrame(data, index=pd.Index(rows, name=ROW_LABELS[table]), columns=columns)


def write_paper_tables(out_dir: str | Path) -> dict[str, dict[str, Path]]:
    """Every paper table as published: <table>_paper.csv/.md/.tex under out_dir."""
    return {t: tables.write_table(paper_table(t), out_dir, f"{t}_paper", caption=CAPTIONS[t]) for t in PAPER_TABLES}


# ---------------------------------------------------------------------------------- this run's numbers

def load_ours(run_dir: str | Path) -> dict[str, pd.DataFrame | None]:
    """This run's long tables (table2..table5) from its stage folders; None for a stage that did not write one."""
    run_dir = Path(run_dir)
    ours: dict[str, pd.DataFrame | None] = {}
    for table, (stage, name) in STAGE_FILES.items():
        path = run_dir / stage / name
        if not path.exists():
            ours[table] = None
            continue
        rows = records.validate_long(pd.read_csv(path), str(path))
        for column in ("model", "benchmark", "metric", "judge", "data"):
            rows[column] = rows[column].fillna("").astype(str)
        ours[table] = rows
    return ours


def judges(rows: pd.DataFrame | None) -> list[str]:
    """The judges in a long table, in first-seen order."""
    return [] if rows is None else list(dict.fromkeys(rows["judge"]))


def _source(rows: pd.DataFrame) -> str:
    """'model: judge, data' for each distinct combination, joined."""
    return "; ".join(dict.fromkeys(f"{m}: {j or '?'}, {d or '?'}" for m, j, d in zip(rows["model"], rows["judge"], rows["data"])))


def match_column(table: str, benchmark: str, metric: str, spec: list[tuple[str, str, str]]) -> str | None:
    """The paper column label our (benchmark, metric) sits under, or None."""
    paper_benchmarks = list(dict.fromkeys(b for b, _, _ in spec))
    role = benchmark_role(benchmark)
    target = PAPER_BENCHMARKS.get(table, {}).get(role or "")
    if target is None and len(paper_benchmarks) == 1 and table == "table2":
        target = paper_benchmarks[0]  # the human evaluation has one test set: ours is the run's test set
    for b, m, label in spec:
        if b == target and _norm(m) == _norm(metric):
            return label
    return None


def comparison_table(table: str, ours: pd.DataFrame | None, *, scale: str = "235B-A22B",
                     stage: str = "") -> pd.DataFrame:
    """The paper's table in its own layout with this run's numbers beside it: '<column> (paper)' and '<column> (ours)'
    (value with its CI), our columns the paper lacks appended, our models the paper lacks under 'This run only', and
    'ours from' naming our model, judge and data; ours None -> one 'ours' column saying 'not run'."""
    paper = paper_results(table)
    spec = published_columns(paper)
    published = paper_table(table)
    if ours is None:
        out = published.copy()
        out.columns = [f"{c} (paper)" for c in out.columns]
        out["ours"] = [("" if _is_heading(paper, i) else NOT_RUN + (f" ({stage} missing)" if stage else ""))
                       for i in out.index]
        return out
    if len(judges(ours)) > 1:
        raise ValueError(f"{table}: several judges {judges(ours)}; compare one at a time (rows[rows.judge == ...])")
    digits = {label: max((_decimals(t) for t in paper.loc[(paper.benchmark == b) & (paper.metric == m), "text"]),
                         default=3) for b, m, label in spec}
    ours = ours.assign(paper_row=[paper_row(table, m, scale) for m in ours["model"]],
                       paper_col=[match_column(table, b, m, spec) for b, m in zip(ours["benchmark"], ours["metric"])])
    ours["row"] = ours["paper_row"].fillna(ours["model"])
    ours["col"] = [c if isinstance(c, str) else (f"{m}" if ours["benchmark"].nunique() == 1 else f"{b} {m}")
                   for c, b, m in zip(ours["paper_col"], ours["benchmark"], ours["metric"])]
    cells: dict[tuple[str, str], str] = {}
    for r in ours.itertuples():
        cells.setdefault((r.row, r.col), tables.ci_cell(float(r.value), r.low, r.high, digits.get(r.col, 3)))
    extra_cols = [c for c in dict.fromkeys(ours.loc[ours["paper_col"].isna(), "col"])]
    extra_rows = [m for m in dict.fromkeys(ours.loc[ours["paper_row"].isna(), "row"])]
    columns = [x for _, _, label in spec for x in (f"{label} (paper)", f"{label} (ours)")]
    columns += [f"{c} (ours)" for c in extra_cols] + ["ours from"]
    index, data = [], []
    for label, heading in _rows_with_groups(paper, "model") + ([(THIS_RUN_ONLY, True)] if extra_rows else []) + \
            [(m, False) for m in extra_rows]:
        index.append(label)
        if heading:
            data.append([""] * len(columns))
            continue
        row = []
        for b, m, col in spec:
            text = paper.loc[(paper.model == label) & (paper.benchmark == b) & (paper.metric == m), "text"]
            row += [text.iloc[0] if len(text) else "", cells.get((label, col), "")]
        row += [cells.get((label, c), "") for c in extra_cols]
        row.append(_source(ours[ours["row"] == label]) if (ours["row"] == label).any() else "")
        data.append(row)
    return pd.DataFrame(data, index=pd.Index(index, name=ROW_LABELS[table]), columns=columns)


def _is_heading(paper: pd.DataFrame, label: str) -> bool:
    return label in set(paper["group"]) and label not in set(paper["model"])


def table1_comparison(ours: dict[str, pd.DataFrame | None]) -> pd.DataFrame:
    """Table 1 with the test sets this run evaluated on (from the automatic and human evaluation's `data` column)."""
    out = paper_table("table1")
    out.columns = [f"{c} (paper)" for c in out.columns]
    rows = pd.concat([r for r in (ours.get("table3"), ours.get("table2")) if r is not None] or [pd.DataFrame()])
    if rows.empty:
        out["ours"] = NOT_RUN + " (05_automatic_evaluation and 06_human_evaluation missing)"
        return out
    target = {b: PAPER_BENCHMARKS["table1"].get(benchmark_role(b) or "", b) for b in rows["benchmark"]}
    described = {}
    for benchmark, data in zip(rows["benchmark"], rows["data"]):
        described.setdefault(target[benchmark], {})[benchmark] = data
    n = {label: "; ".join(_sample_count(d) for d in descs.values()) for label, descs in described.items()}
    extra = [b for b in described if b not in out.index]
    if extra:
        out = pd.concat([out, pd.DataFrame([[""] * len(out.columns)], index=[THIS_RUN_ONLY], columns=out.columns),
                         pd.DataFrame([[""] * len(out.columns)] * len(extra), index=extra, columns=out.columns)])
        out.index.name = ROW_LABELS["table1"]
    out["#Samples (ours)"] = [n.get(i, "") for i in out.index]
    out["ours from"] = ["; ".join(f"{b}: {d}" for b, d in described.get(i, {}).items()) for i in out.index]
    return out


def _sample_count(data: str) -> str:
    """The n of a `data` description such as "synthetic-test n=64", or "?"."""
    match = re.search(r"\bn=(\d+)", data)
    return match.group(1) if match else "?"


def trained_config(run_dir: Path, notebook: str) -> dict | None:
    """The trainer fields a stage of the run trained with: notebook 02's run, or notebook 04's full HAE-DPO run
    (else its first run), from the stage's metrics.json; None when the stage has not run."""
    path = run_dir / notebook / "metrics.json"
    if not path.exists():
        return None
    train = json.loads(path.read_text(encoding="utf-8")).get("train", {})
    if "config" not in train:  # notebook 04: one run per label
        train = train.get("hae") or next(iter(train.values()), {})
    return train.get("config")


def _hyperparameter_text(key, values: dict) -> str:
    if isinstance(key, tuple):
        return ",".join(_hyperparameter_text(k, values) for k in key)
    value = values.get(key)
    if key in STEP_LIMITS and int(values.get(STEP_LIMITS[key], -1)) > 0:
        return f"{values[STEP_LIMITS[key]]} steps"
    if key == "bf16":
        return "bfloat16" if value else "float32"
    if key == "max_length" and value is None:
        return "none (no sample dropped)"
    return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def _device_rows(device: str) -> dict[str, str]:
    """Table 11's hardware rows from env.device_summary's text ("cuda x8 (NVIDIA H100 80GB HBM3)" or "cpu (2 threads)")."""
    match = re.match(r"cuda x(\d+) \((.*)\)", device)
    if match:
        return {"GPU type": match.group(2), "Number of GPUs": match.group(1), "Hardware": f"{match.group(1)}×{match.group(2)}"}
    return {"GPU type": "none", "Number of GPUs": "0", "Hardware": device}


def table11_comparison(run_dir: str | Path, *, scale: str = "235B-A22B") -> pd.DataFrame:
    """Table 11 with the hyperparameters this run's notebooks 02 and 04 used, the device they ran on and how long they
    trained (in the training-time row of `scale`)."""
    run_dir = Path(run_dir)
    out = paper_table("table11")
    stages = list(out.columns)
    out.columns = [f"{c} (paper)" for c in out.columns]
    sources = []
    for stage in stages:
        notebook, keys = HYPERPARAMETERS[stage]
        values = trained_config(run_dir, notebook)
        if values is None:
            out[f"{stage} (ours)"] = NOT_RUN + f" ({notebook} missing)"
            continue
        ours = {row: _hyperparameter_text(key, values) for row, key in keys.items()}
        if stage == "HAE-DPO":
            ours["Reference model"] = "frozen SFT model"
        env_file = run_dir / notebook / "environment.json"
        if env_file.exists():
            ours.update(_device_rows(json.loads(env_file.read_text())["device"]))
        metrics_file = run_dir / notebook / "metrics.json"
        if metrics_file.exists():
            seconds = json.loads(metrics_file.read_text()).get("train_wall_seconds")
            if isinstance(seconds, dict):  # notebook 04: one run per margin variant; the full HAE-DPO one when trained
                seconds = seconds.get("hae", max(seconds.values(), default=None))
            if seconds is not None:
                ours[f"Training time ({scale.split('-')[0]})"] = f"{seconds:.0f} s"
        out[f"{stage} (ours)"] = [ours.get(h, "") for h in out.index]
        sources.append(f"{stage}: {notebook}/metrics.json")
    out = out[[c for s in stages for c in (f"{s} (paper)", f"{s} (ours)")]]
    out["ours from"] = "; ".join(sources)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "judge"


def write_comparison_tables(run_dir: str | Path, out_dir: str | Path, *, scale: str = "235B-A22B") -> dict[str, dict[str, Path]]:
    """Every paper table beside this run's numbers: <table>_vs_ours.csv/.md/.tex (one per judge when a table has
    several: <table>_vs_ours_<judge>)."""
    run_dir = Path(run_dir)
    ours = load_ours(run_dir)
    written = {"table1_vs_ours": tables.write_table(table1_comparison(ours), out_dir, "table1_vs_ours",
                                                    caption=CAPTIONS["table1"] + " Beside it: this run's test sets.")}
    for table in ("table2", "table3", "table4", "table5"):
        rows = ours[table]
        caption = CAPTIONS[table] + " Beside it: this run (value [95% CI])."
        if rows is None or len(judges(rows)) <= 1:
            stem = f"{table}_vs_ours"
            df = comparison_table(table, rows, scale=scale, stage=STAGE_FILES[table][0])
            written[stem] = tables.write_table(df, out_dir, stem, caption=caption)
            continue
        for judge in judges(rows):
            stem = f"{table}_vs_ours_{_slug(judge)}"
            df = comparison_table(table, rows[rows["judge"] == judge], scale=scale)
            written[stem] = tables.write_table(df, out_dir, stem, caption=caption + f" Judge: {judge}.")
    written["table11_vs_ours"] = tables.write_table(table11_comparison(run_dir, scale=scale), out_dir, "table11_vs_ours",
                                                    caption=CAPTIONS["table11"] + " Beside it: this run.")
    return written


def missing_stages(run_dir: str | Path) -> list[str]:
    """What the comparisons read and this run lacks: stage files ('<stage>/<file>') and executed notebooks (table 11)."""
    run_dir = Path(run_dir)
    needed = [f"{s}/{n}" for s, n in STAGE_FILES.values()] + [f"{nb}.ipynb" for nb, _ in HYPERPARAMETERS.values()]
    return [f for f in needed if not (run_dir / f).exists()]


def stage_metrics(stage_dir: str | Path, *, paper_scale: str, paper_files: Mapping, comparison_files: Mapping,
                  figure_files: Mapping, missing: Sequence[str], published: pd.DataFrame) -> dict:
    """What notebook 08 writes to metrics.json: the files it wrote (relative to its folder), what the run lacked,
    and how many published rows it transcribes."""
    stage_dir = Path(stage_dir)
    tables_written = [p for files in [*paper_files.values(), *comparison_files.values()] for p in files.values()]
    return {"paper_scale": paper_scale, "tables": sorted(str(p.relative_to(stage_dir)) for p in tables_written),
            "figures": sorted(str(p.relative_to(stage_dir)) for files in figure_files.values() for p in files),
            "missing_stages": list(missing), "paper_rows": len(published)}
