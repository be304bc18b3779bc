"""Notebook 04's runs: the DPO budget sweep on the validation subsets, then every table-4 variant (and seed)
at the chosen budget (plain DPO with the first seed is the sweep's winning run, not trained twice). Each run is
one launch of `editcaption.train.hae_dpo` (`launch.run_training`) from the SFT model with the SFT model as the
frozen reference, into its own folder, as on a cluster.

The budget (learning rate, and the weight of the chosen answer's NLL term) is chosen with plain DPO on the
targeted *validation* subsets of notebook 01, never on the test split, and every variant then trains with it.
A setting *collapses* when its answers run on: words per answer above COLLAPSE_WORDS_RATIO x the SFT model's, or
a share of multi-clause answers more than COLLAPSE_MULTI_CLAUSE_GAIN above the SFT model's. Among the settings
that do not collapse, those with the paper's loss (eq. 2, no NLL term) come first; the NLL term is taken only
when every setting without it collapses (a stated deviation, with the measurement in the sweep table). The one
with the lowest pooled P0 rate wins, and every other setting is compared with it pair by pair (the paired
difference and its interval on the same validation pairs), not by overlapping intervals.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import datasets
import pandas as pd

from editcaption import paths
from editcaption.data import answer_shape
from editcaption.eval import targeted
from editcaption.train import launch
from editcaption.train import margin
from editcaption.train.recipe import read_recipe, resolved, with_run
from editcaption.train.configs import VARIANTS
from editcaption.train.sft import final_model_dir, read_train_metrics

DPO_MODULE = "editcaption.train.hae_dpo"
COLLAPSE_WORDS_RATIO = 1.5  # words per answer above 1.5 x the SFT model's: run-on text
COLLAPSE_MULTI_CLAUSE_GAIN = 0.25  # multi-clause answers 25 points above the SFT model's share: appending


def parse_numbers(text: str, name: str) -> list[float]:
    """"1e-5, 3e-5" -> [1e-05, 3e-05]; an entry that is not a number raises naming the parameter."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(f"{name}: {part!r} is not a number (expected comma-separated numbers)") from None
    return values


def parse_seeds(text: str, default: int) -> list[int]:
    """"0,1,2" -> [0, 1, 2]; empty -> [default]; repeated or non-integer seeds raise."""
    if not text.strip():
        return [default]
    values = parse_numbers(text, "train_seeds")
    if any(not v.is_integer() for v in values) or len(set(values)) != len(values):
        raise ValueError(f"train_seeds {text!r}: expected distinct integers")
    return [int(v) for v in values]


def parse_variants(text: str) -> list[str]:
    """"dpo,st_only,h_only,hae" -> the variants in order (table 4's rows); unknown or repeated names raise."""
    variants = [v.strip() for v in text.split(",") if v.strip()]
    unknown = [v for v in variants if v not in VARIANTS]
    if not variants or unknown or len(set(variants)) != len(variants):
        raise ValueError(f"hae_variants {text!r}: expected distinct names from {sorted(VARIANTS)}")
    return variants


def run_label(variant: str, seed: int, first_seed: int) -> str:
    """The folder and table name of a run: the variant for the first seed, `<variant>_seed<k>` for the others."""
    return variant if seed == first_seed else f"{variant}_seed{seed}"


def nll_fields(chosen_nll_weight: float) -> dict[str, Any]:
    """TRL's loss fields for a weight of the chosen answer's NLL: ["sigmoid"] alone at 0 (the paper's loss),
    else ["sigmoid", "sft"] weighted [1, w] (TRL's "sft" term is the chosen answer's NLL per token)."""
    if chosen_nll_weight:
        return {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, float(chosen_nll_weight)]}
    return {"loss_type": ["sigmoid"], "loss_weights": None}


def chosen_nll_weight(recipe: Mapping[str, Any]) -> float:
    """The weight of TRL's "sft" term in a recipe's loss (0 without one)."""
    loss_type = recipe.get("loss_type", ["sigmoid"])
    loss_type = [loss_type] if isinstance(loss_type, str) else list(loss_type)
    if "sft" not in loss_type:
        return 0.0
    weights = recipe.get("loss_weights") or [1.0] * len(loss_type)
    return float(weights[loss_type.index("sft")])


def budget_fields(budget: Mapping[str, float]) -> dict[str, Any]:
    """A budget {learning_rate, chosen_nll_weight} as the trainer's fields."""
    return {"learning_rate": float(budget["learning_rate"]), **nll_fields(budget["chosen_nll_weight"])}


def run_recipe(recipe_path: str | Path, sft_model: str | Path, preference_dir: str | Path, *, seed: int,
               run_name: str) -> dict[str, Any]:
    """The DPO recipe with this run's fields: start from the SFT model, keep it frozen as the reference, train on
    notebook 03's preference set, with the run's seed (each variant's runs replace the seed)."""
    return with_run(read_recipe(recipe_path, "dpo"), "dpo", model_name_or_path=str(sft_model),
                    ref_model_name_or_path=str(sft_model), dataset_path=str(preference_dir), seed=seed,
                    run_name=run_name)


def reference_margins(recipe: Mapping[str, Any], *, limit: int = 0) -> pd.DataFrame:
    """Eq. 3's margin terms over the recipe's preference set, from its reference model, at its configured
    γ_st, γ_h, τ and ℓ_ref aggregation (`margin.reference_margins`)."""
    fields = resolved(recipe, "dpo")
    return margin.reference_margins(fields["ref_model_name_or_path"] or fields["model_name_or_path"],
                                    fields["dataset_path"], gamma_st=fields["hae_gamma_st"],
                                    gamma_h=fields["hae_gamma_h"], tau=fields["hae_tau"],
                                    hardness_logp=fields["hae_hardness_logp"], limit=limit)


def train_run(recipe: Mapping[str, Any], run_dir: str | Path, *, accelerate_config: str = "",
              num_processes: int = 1) -> dict[str, Any]:
    """One HAE-DPO run into `run_dir`: its wall time, its train metrics (with the log history), the recipe it
    was launched with (without its folder), its folder and its model."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    seconds = launch.run_training(DPO_MODULE, {**recipe, "output_dir": str(run_dir)}, run_dir,
                                  accelerate_config=accelerate_config, num_processes=num_processes)
    return {"seconds": seconds, "metrics": read_train_metrics(run_dir), "params": dict(recipe), "dir": str(run_dir),
            "model": str(final_model_dir(run_dir, merged_out=run_dir / "merged"))}


def constant_margin(margins: pd.DataFrame) -> float:
    """The `const` control's margin: HAE-DPO's mean margin over the preference set (`reference_margins`)."""
    if not len(margins):
        raise ValueError("no margins: the const control's margin is HAE-DPO's mean margin over the preference set")
    return round(float(margins["margin"].mean()), 6)


def train_variants(variants: Sequence[str], seeds: Sequence[int], recipe: Mapping[str, Any], stage_dir: str | Path, *,
                   budget: Mapping[str, float], done: Sequence[Mapping[str, Any]] = (), accelerate_config: str = "",
                   num_processes: int = 1, margin_of_const: float = 0.0) -> dict[str, dict[str, Any]]:
    """Every (variant, seed) run from the same recipe (model, reference, data) at the chosen budget: run label ->
    {variant, seed, seconds, metrics, params, dir, model, reused}. A run of `done` (the budget sweep's) launched
    with exactly the fields a (variant, seed) needs is taken as it is (`reused` True) instead of trained
    again: plain DPO with the first seed at the chosen budget is the sweep's winning run. The `const` control
    trains with `margin_of_const` (`constant_margin`: HAE-DPO's mean margin)."""
    if "const" in variants and not margin_of_const > 0:
        raise ValueError("the const control needs margin_of_const > 0 (experiment.constant_margin of the margins)")
    runs = {}
    for seed, variant in itertools.product(seeds, variants):
        label = run_label(variant, seed, seeds[0])
        run_params = {**recipe, **budget_fields(budget), "hae_variant": variant, "seed": seed}
        if variant == "const":
            run_params["hae_constant_margin"] = float(margin_of_const)
        same = [run for run in done if run["params"] == run_params]
        if same:
            print(f"{label}: the sweep's run {same[0]['dir']} has these parameters; taken as it is")
            run = {**same[0], "reused": True}
        else:
            run = {**train_run(run_params, Path(stage_dir) / label, accelerate_config=accelerate_config,
                               num_processes=num_processes), "reused": False}
        runs[label] = {"variant": variant, "seed": seed, **run}
    return runs


def reward_summary(log_history: list[dict]) -> dict[str, float | None]:
    """The last logged training value of TRL's reward metrics and the HAE margin terms."""
    keys = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "hae/margin_mean",
            "hae/st_term_mean", "hae/hardness_mean", "loss")
    last = {}
    for entry in log_history:
        for key in keys:
            if key in entry:
                last[key] = entry[key]
    return {key: last.get(key) for key in keys}


def runs_summary(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Run label -> its variant, seed, run and model folders, wall seconds, optimizer steps, and whether it is a
    sweep run taken as it is."""
    return {label: {"variant": run["variant"], "seed": run["seed"], "dir": run["dir"], "model": run["model"],
                    "seconds": round(run["seconds"], 1), "steps": run["metrics"]["global_step"],
                    "reused": run["reused"]}
            for label, run in runs.items()}


def first_seed_models(runs: Mapping[str, Mapping[str, Any]], sft_model: str) -> dict[str, str]:
    """The models to compare: the SFT model, then each variant's run with the first seed."""
    first = next(iter(runs.values()))["seed"] if runs else None  # runs are seed-major: the first is the first seed
    return {"SFT": sft_model, **{run["variant"]: run["model"] for run in runs.values() if run["seed"] == first}}


def stage_metrics(runs: Mapping[str, Mapping[str, Any]], sweep: "Sweep", margins: pd.DataFrame, rates: pd.DataFrame,
                  comparisons: pd.DataFrame, kinds: pd.DataFrame, conclusion_text: str, **extra: Any) -> dict[str, Any]:
    """What notebook 04 writes to metrics.json: the budget and the sweep, each run (its training metrics and
    last logged rewards), the margin statistics, the validation error rates and comparisons, the conclusion."""
    hardness = margins["h_term"].describe(percentiles=[0.1, 0.5, 0.9]).to_dict()
    return {**extra, "budget": sweep.best, "sweep": sweep.table.to_dict(orient="records"), "runs": runs_summary(runs),
            "train": {label: {k: v for k, v in run["metrics"].items() if k != "log_history"} for label, run in runs.items()},
            "final_rewards": {label: reward_summary(run["metrics"]["log_history"]) for label, run in runs.items()},
            "margins": {"n": len(margins), "mean": margins[["st_term", "h_term", "margin"]].mean().to_dict(),
                        "by_error_type": margins.groupby("error_type")["margin"].mean().to_dict(),
                        "by_severity": margins.groupby("severity")["margin"].mean().to_dict(), "hardness": hardness},
            "validation_rates": rates.to_dict(orient="records"),
            "validation_comparisons": comparisons.to_dict(orient="records"),
            "validation_error_kinds": kinds.to_dict(orient="records"), "conclusion": conclusion_text}


@dataclass
class Sweep:
    """The budget sweep's table (one row per setting, plus the SFT model) and the setting it chose."""

    table: pd.DataFrame
    best: dict[str, float]
    scores: dict[str, dict[str, pd.DataFrame]]
    runs: list[dict[str, Any]]


def sweep_budget(learning_rates: str | Sequence[float], nll_weights: str | Sequence[float], recipe: Mapping[str, Any],
                 validation: Mapping[str, datasets.Dataset], stage_dir: str | Path, *, sft_model: str,
                 batch_size: int = 16, max_new_tokens: int = 48, seed: int = 0, accelerate_config: str = "",
                 num_processes: int = 1) -> Sweep:
    """Plain DPO at every (learning rate, NLL weight) of the grid; each model and the SFT model write an
    instruction for every validation pair; the setting with the lowest pooled P0 error rate wins. With no
    grid the recipe's budget (its learning_rate, its "sft" loss weight) is kept and nothing is trained. The grids
    may be given as comma-separated text (notebook 04's sweep_learning_rates, sweep_chosen_nll_weights)."""
    if isinstance(learning_rates, str):
        learning_rates = parse_numbers(learning_rates, "sweep_learning_rates")
    if isinstance(nll_weights, str):
        nll_weights = parse_numbers(nll_weights, "sweep_chosen_nll_weights")
    configured = {"learning_rate": float(resolved(recipe, "dpo")["learning_rate"]),
                  "chosen_nll_weight": chosen_nll_weight(recipe)}
    grid = [{"learning_rate": lr, "chosen_nll_weight": w}
            for lr in (learning_rates or [configured["learning_rate"]])
            for w in (nll_weights or [configured["chosen_nll_weight"]])]
    if not learning_rates and not nll_weights:
        return Sweep(pd.DataFrame(columns=["setting", "p0", "low", "high", "chosen"]),
                     {**configured, "reason": "the recipe's budget (no sweep)"}, {}, [])
    if not validation:
        raise ValueError("the budget sweep needs notebook 01's targeted validation subsets (n_targeted_validation > 0)")
    models, runs = {"SFT": sft_model}, []
    for setting in grid:
        label = f"lr{setting['learning_rate']:g}_nll{setting['chosen_nll_weight']:g}"
        runs.append(train_run({**recipe, **budget_fields(setting), "hae_variant": "dpo"}, Path(stage_dir) / label,
                              accelerate_config=accelerate_config, num_processes=num_processes))
        models[label] = runs[-1]["model"]
    scores = targeted.score_models(models, validation, Path(stage_dir) / "generations", batch_size=batch_size,
                                   max_new_tokens=max_new_tokens)
    settings = dict(zip(list(models)[1:], grid))
    table = pd.DataFrame([{"setting": name, **targeted.pooled_rate(by_mode, seed=seed), **answer_length(by_mode)}
                          for name, by_mode in scores.items()])
    table["chosen_nll_weight"] = [settings[n]["chosen_nll_weight"] if n in settings else None for n in table["setting"]]
    sft = table[table["setting"] == "SFT"].iloc[0]
    table["collapsed"] = (table["setting"] != "SFT") & (
        (table["words"] > COLLAPSE_WORDS_RATIO * sft["words"])
        | (table["multi_clause"] > sft["multi_clause"] + COLLAPSE_MULTI_CLAUSE_GAIN))
    trained = table[table["setting"] != "SFT"]
    kept = trained[~trained["collapsed"]]
    paper_loss = kept[kept["chosen_nll_weight"] == 0]
    pool, reason = ((paper_loss, "the paper's loss (no NLL term), not collapsed") if len(paper_loss) else
                    (kept, "every setting without the NLL term collapsed (words per answer or multi-clause share): "
                           "the NLL term is a deviation forced by that") if len(kept) else
                    (trained, "every setting collapsed: the lowest P0 among them, to be read with care"))
    best_label = pool.loc[pool["p0"].idxmin(), "setting"]
    table["chosen"] = table["setting"] == best_label
    paired = targeted.paired_comparisons(targeted.with_pooled(scores),
                                         [(best_label, other) for other in table["setting"] if other != best_label],
                                         seed=seed)
    paired = paired[(paired["subset"] == "all") & (paired["measure"] == "p0")].set_index("b")
    for column in ("diff", "low", "high"):  # each setting minus the chosen one, on the same validation pairs
        table[f"vs_chosen_{column}"] = [paired[column].get(name) if name != best_label else 0.0
                                        for name in table["setting"]]
    print(f"budget: {best_label} ({reason})")
    return Sweep(table, {**settings[best_label], "reason": reason}, scores, runs)


def answer_length(by_mode: Mapping[str, pd.DataFrame]) -> dict[str, float]:
    """Words per answer and the share of answers with two or more edit clauses, over every subset's pairs: the
    two signs of a collapse into run-on text."""
    texts = pd.concat([frame["instruction"] for frame in by_mode.values()]).fillna("")
    return {"words": float(texts.map(answer_shape.words).mean()),
            "multi_clause": float((texts.map(answer_shape.edit_clauses) >= 2).mean())}


def _trend(history: list[dict], key: str) -> tuple[float, float] | None:
    """The first and the last logged value of a metric (None when it was never logged)."""
    values = [float(e[key]) for e in history if key in e]
    return (values[0], values[-1]) if values else None


def conclusion(comparisons: pd.DataFrame, runs: Mapping[str, Mapping[str, Any]],
               kinds: pd.DataFrame | None = None) -> str:
    """Notebook 04's closing paragraph, drawn from its own numbers: what standard DPO and HAE-DPO did to the
    Correct rate (when compared) and the P0 error rate on each targeted subset (paired 95 % intervals; "lower
    on no subset" where every interval holds 0), which kind of P0 error moved (`targeted.error_kinds`: left out
    vs stated wrongly), and what the training curves say about the chosen and rejected log-probabilities."""
    lines = []
    p0 = comparisons[comparisons["measure"] == "p0"]
    correct = comparisons[comparisons["measure"] == "correct"]
    for (a, b), group in p0.groupby(["a", "b"], sort=False):
        for name, rows in (("Correct rate (no error at any severity)", correct[(correct["a"] == a) & (correct["b"] == b)]),
                           ("P0 error rate", group)):
            if not len(rows):
                continue
            lower = [r.subset for r in rows.itertuples() if r.high < 0]
            higher = [r.subset for r in rows.itertuples() if r.low > 0]
            detail = "; ".join(f"{r.subset} {r.rate_a:.1%} -> {r.rate_b:.1%} ({r.diff:+.1%} [{r.low:+.1%}, {r.high:+.1%}])"
                               for r in rows.itertuples())
            verdict = (f"lower on {', '.join(lower)}" if lower else "lower on no subset") + (
                f", higher on {', '.join(higher)}" if higher else "")
            lines.append(f"- **{b} vs {a}**: {name} {verdict}. {detail}.")
        if kinds is not None and {a, b} <= set(kinds["model"]):
            before, after = (kinds[kinds["model"] == m].set_index("subset") for m in (a, b))
            moved = "; ".join(f"{subset}: left out {before.loc[subset, 'omitted']:.0%} -> {after.loc[subset, 'omitted']:.0%}, "
                              f"stated wrongly {before.loc[subset, 'wrong']:.0%} -> {after.loc[subset, 'wrong']:.0%}"
                              for subset in before.index if subset in after.index)
            lines.append(f"  Pairs with a P0 error of each kind, {a} -> {b}: {moved}.")
    for label, run in runs.items():
        history = run["metrics"]["log_history"]
        accuracy, chosen, rejected = (_trend(history, k) for k in ("rewards/accuracies", "logps/chosen", "logps/rejected"))
        if accuracy and chosen and rejected:
            direction = "fell" if chosen[1] < chosen[0] else "rose"
            lines.append(f"- **{label} training**: reward accuracy {accuracy[0]:.2f} -> {accuracy[1]:.2f}; log p(chosen) "
                         f"{direction} {chosen[0]:.1f} -> {chosen[1]:.1f}, log p(rejected) {rejected[0]:.1f} -> "
                         f"{rejected[1]:.1f} (summed over the answer's tokens, last logging window).")
    return "\n".join(lines)


def histories(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, list[dict]]:
    """Run label -> its trainer log history."""
    return {label: run["metrics"]["log_history"] for label, run in runs.items()}


def run_seeds(runs: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[str, int]]:
    """Run label -> (variant, seed), as `targeted.seeded_rates` takes them."""
    return {label: (run["variant"], run["seed"]) for label, run in runs.items()}


def stage_inputs(run_name: str, output_root: str | Path, *, sft_model_path: str, preference_data_path: str,
                 targeted_validation_path: str, hae_variants: str, train_seeds: str, seed: int):
    """Notebook 04's inputs, each from its path parameter or from what notebooks 01-03 recorded for the run:
    (SFT model, preference set folder, targeted validation subsets, variants, seeds), printed in one line."""
    sft_model = paths.sft_model(sft_model_path, run_name, output_root)
    preference_dir = paths.upstream(preference_data_path, run_name, "03_preference_data", "preferences", output_root)
    validation = targeted.load_subsets(paths.upstream(targeted_validation_path, run_name, "01_dataset_construction",
                                                      "targeted/validation", output_root))
    variants, seeds = parse_variants(hae_variants), parse_seeds(train_seeds, seed)
    print(f"SFT model {sft_model}; preferences {preference_dir}; variants {variants} x seeds {seeds}; "
          f"validation subsets {({m: len(p) for m, p in validation.items()})}")
    return sft_model, preference_dir, validation, variants, seeds


def validation_results(runs: Mapping[str, Mapping[str, Any]], sft_model: str, validation, generations_dir, *,
                       batch_size: int, max_new_tokens: int, seed: int):
    """The SFT model and each variant's first-seed run on the targeted validation subsets: (per-model scores with
    the pooled subset, error rates with CIs, paired comparisons of each model pair)."""
    models = first_seed_models(runs, sft_model)
    scores = targeted.with_pooled(targeted.score_models(models, validation, generations_dir, batch_size=batch_size,
                                                        max_new_tokens=max_new_tokens))
    rates = targeted.error_rates(scores, seed=seed)
    return scores, rates, targeted.paired_comparisons(scores, targeted.comparisons_for(list(models)), seed=seed,
                                                      measures=("p0", "mode", "correct"))
