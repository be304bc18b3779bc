"""The `editcaption` command: thin wrappers over the package (imports are lazy so --help is instant)."""
from __future__ import annotations

import argparse
import json
import sys


def _cmd_run(args: argparse.Namespace) -> int:
    from editcaption import runner

    results = runner.run_profile(args.profile, only=args.only, run_name=args.run_name,
                                 output_root=args.output_root, progress=not args.no_progress)
    for r in results:
        print(f"{r.status:>6}  {r.seconds:7.1f} s  {r.notebook}  -> {r.executed}")
    return 0


def _cmd_build_tiny_model(args: argparse.Namespace) -> int:
    from editcaption.models.tiny import build_tiny_model

    out = build_tiny_model(args.preset, args.out, moe=args.moe, seed=args.seed)
    print(f"tiny Qwen3-VL ({args.preset}{', moe' if args.moe else ''}, seed {args.seed}) written to {out}")
    return 0


def _cmd_pretrain_tiny(args: argparse.Namespace) -> int:
    from editcaption.models.pretrain import pretrain_tiny_main

    out = pretrain_tiny_main(args.preset, args.steps, args.seed, args.out, image_size=args.image_size,
                             batch_size=args.batch_size, learning_rate=args.learning_rate,
                             vision_lr_scale=args.vision_lr_scale, pair_rate=args.pair_rate,
                             curriculum_ratio=args.curriculum_ratio, compare_rate=args.compare_rate,
                             init_from=args.init_from, stop_after=args.stop_after, n_eval=args.n_eval)
    print(f"tiny-world base written to {out}")
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from editcaption.world.synthetic import synth_main

    out = synth_main(args.n, args.seed, args.size, args.out, layout=args.layout)
    print(f"{args.n} synthetic pairs (seed {args.seed}, {args.size} px, {args.layout} layout) written to {out}")
    return 0


def _cmd_score(args: argparse.Namespace) -> int:
    from editcaption import records

    pairs = records.load_pairs(args.pairs)
    if args.judge == "rule":
        from editcaption.world.rule_judge import RuleJudge

        summary = RuleJudge().score_file(pairs, args.instructions, args.out, on_error=args.on_error)
    else:
        from pathlib import Path

        from editcaption.eval.llm_judge import make_judge, score_file

        if not args.model:
            raise SystemExit(f"--judge {args.judge} needs --model (the served model name or a local folder)")
        out = Path(args.out)
        cache = args.cache or out.with_name(out.stem + ".judge_cache.jsonl")
        options = {"cache_path": cache, "price_per_million": (args.price_in, args.price_out)}
        if args.max_new_tokens:
            options["max_new_tokens"] = args.max_new_tokens
        if args.judge == "openai":
            if not args.base_url:
                raise SystemExit("--judge openai needs --base-url (e.g. http://127.0.0.1:8000/v1)")
            options.update(base_url=args.base_url, api_key_env=args.api_key_env, max_retries=args.max_retries,
                           timeout=args.timeout, max_workers=args.workers)
        try:
            judge = make_judge(f"{args.judge}:{args.model}", **options)
        except ValueError as exc:  # a bad URL, a remote endpoint without its key, ...
            raise SystemExit(f"editcaption score: error: {exc}") from None
        summary = score_file(judge, pairs, args.instructions, out, on_error=args.on_error, progress=not args.no_progress)
    print(json.dumps(summary, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="editcaption", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="execute the numbered notebooks with papermill under a profile")
    p.add_argument("--profile", required=True, help="profile name in params/ (smoke, demo, ...) or a YAML path")
    p.add_argument("--only", help="comma-separated notebook numbers, e.g. 01,02")
    p.add_argument("--run-name", help="folder under outputs/ (default: the profile's run_name)")
    p.add_argument("--output-root", default="outputs", help="where run folders go")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=_cmd_run)

    p = sub.add_parser("build-tiny-model", help="build a randomly initialised tiny Qwen3-VL checkpoint")
    p.add_argument("--preset", choices=("smoke", "demo"), default="smoke")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--moe", action="store_true", help="build the Qwen3-VL-MoE variant (235B-A22B family)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_cmd_build_tiny_model)

    from editcaption.models.pretrain import COMPARE_RATE, CURRICULUM_RATIO, PAIR_RATE

    p = sub.add_parser("pretrain-tiny", help="tiny-world pre-training: teach a tiny Qwen3-VL to describe synthetic images")
    p.add_argument("--preset", choices=("smoke", "demo"), default="demo")
    p.add_argument("--steps", type=int, required=True, help="optimizer steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, help="output folder (final/ holds the checkpoint, RECIPE.json the recipe)")
    p.add_argument("--image-size", type=int, default=96, help="canvas px (32 px cells)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--learning-rate", type=float, default=2e-3)
    p.add_argument("--vision-lr-scale", type=float, default=1.0, help="merger learning rate multiple")
    p.add_argument("--pair-rate", type=float, default=PAIR_RATE, help="share of image-pair samples after the curriculum")
    p.add_argument("--curriculum-ratio", type=float, default=CURRICULUM_RATIO,
                   help="share of the steps on single one-object images first")
    p.add_argument("--compare-rate", type=float, default=COMPARE_RATE,
                   help="share of the pairs asked for the differences alone")
    p.add_argument("--init-from", default=None,
                   help="continue this checkpoint instead of a fresh init (a second stage: use --curriculum-ratio 0)")
    p.add_argument("--stop-after", type=int, default=None, help="stop after this many steps (reproducibility checks)")
    p.add_argument("--n-eval", type=int, default=200, help="held-out images for the description accuracy")
    p.set_defaults(func=_cmd_pretrain_tiny)

    p = sub.add_parser("synth", help="generate synthetic edit pairs with exact ground truth")
    p.add_argument("--n", type=int, required=True, help="number of pairs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=128, help="image side in pixels")
    p.add_argument("--layout", choices=("grid", "free"), default="grid")
    p.add_argument("--out", required=True, help="output folder (a `datasets` folder)")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("score", help="score instructions against pairs' ground truth (rule judge or an LLM judge)")
    p.add_argument("--pairs", required=True, help="pairs folder (from `editcaption synth`) or parquet")
    p.add_argument("--instructions", required=True, help="JSONL of {id, instruction}")
    p.add_argument("--judge", choices=("rule", "openai", "transformers"), default="rule",
                   help="rule (structured changes, no model), openai (an OpenAI-compatible endpoint) or transformers "
                        "(a local VLM folder)")
    p.add_argument("--out", required=True, help="JSONL of per-pair scores (LLM judges add <out>.csv and <stem>.summary.json)")
    p.add_argument("--on-error", choices=("raise", "count"), default="raise",
                   help="bad instruction lines: stop with an error (default) or count and report them")
    p.add_argument("--model", help="LLM judge: the served model name (openai) or a model folder (transformers)")
    p.add_argument("--base-url", help="openai judge: the endpoint up to /chat/completions, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY", help="openai judge: the environment variable holding the key")
    p.add_argument("--cache", help="LLM judge reply cache, JSONL (default: <stem>.judge_cache.jsonl beside --out); "
                                   "a rerun asks only for what it lacks")
    p.add_argument("--max-retries", type=int, default=5, help="openai judge: retries on 429/5xx/timeouts")
    p.add_argument("--timeout", type=float, default=120.0, help="openai judge: seconds per request")
    p.add_argument("--workers", type=int, default=4, help="openai judge: concurrent requests")
    p.add_argument("--max-new-tokens", type=int, default=0, help="LLM judge: reply length limit (0: the judge's default)")
    p.add_argument("--price-in", type=float, default=0.0, help="LLM judge: USD per million prompt tokens (cost report)")
    p.add_argument("--price-out", type=float, default=0.0, help="LLM judge: USD per million completion tokens")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_cmd_score)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from editcaption.config import ConfigError
    from editcaption.records import RecordError
    from editcaption.runner import NotebookFailed

    try:
        return args.func(args)
    except (ConfigError, RecordError, NotebookFailed, FileNotFoundError) as exc:
        print(f"editcaption {args.command}: error: {exc}", file=sys.stderr)
        return 2 if not isinstance(exc, NotebookFailed) else 1


if __name__ == "__main__":
    sys.exit(main())
