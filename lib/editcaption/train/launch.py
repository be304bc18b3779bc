"""Launch a training entry point the way a cluster does: write the stage's recipe (with the run's fields) to a
YAML file, then run `accelerate launch -m editcaption.train.<stage> --config that.yaml` as a subprocess whose
output streams into the notebook (and into train.log).

One process with no accelerate config runs `python -m editcaption.train.<stage> --config that.yaml`
directly, with the environment accelerate's simple launcher would set (OMP_NUM_THREADS, no mixed precision,
no dynamo): the same process, without the launcher's own interpreter start (~3 s per run here, 7 runs in the
smoke profile)."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Mapping

from editcaption import paths
from editcaption.train.recipe import write_recipe


def cpu_threads_per_process(num_processes: int) -> int:
    """CPU threads each launched process uses: OMP_NUM_THREADS when it is set, else the machine's cores shared
    out. accelerate's own default is one thread per process unless `--cpu` is passed: on a 2-core laptop that
    left a core idle and made SFT and DPO steps ~1.8x slower than the same run with two threads."""
    if os.environ.get("OMP_NUM_THREADS", "").isdigit():
        return max(1, int(os.environ["OMP_NUM_THREADS"]))
    return max(1, (os.cpu_count() or 1) // max(num_processes, 1))


def accelerate_command(module: str, recipe_file: str | Path, *, accelerate_config: str = "",
                       num_processes: int = 1) -> list[str]:
    """`accelerate launch [--config_file C] --num_processes N --num_cpu_threads_per_process T -m MODULE --config
    FILE` with this interpreter's accelerate; a relative config path is taken from the repo root."""
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if accelerate_config:
        config = Path(accelerate_config)
        config = config if config.is_absolute() else paths.repo_root() / config
        if not config.exists():
            raise FileNotFoundError(f"accelerate config {config} not found (see params/accelerate/)")
        cmd += ["--config_file", str(config)]
    else:
        cmd += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    cmd += ["--num_processes", str(num_processes),
            "--num_cpu_threads_per_process", str(cpu_threads_per_process(num_processes)),
            "-m", module, "--config", str(recipe_file)]
    return cmd


def launch_command(module: str, recipe_file: str | Path, *, accelerate_config: str = "",
                   num_processes: int = 1) -> tuple[list[str], dict[str, str]]:
    """(command, environment variables to set): `python -m MODULE --config FILE` for one process without an
    accelerate config, else `accelerate_command`'s launch (whose launcher sets the variables itself)."""
    if accelerate_config or num_processes != 1:
        return accelerate_command(module, recipe_file, accelerate_config=accelerate_config,
                                  num_processes=num_processes), {}
    env = {"OMP_NUM_THREADS": str(cpu_threads_per_process(1)), "ACCELERATE_MIXED_PRECISION": "no",
           "ACCELERATE_DYNAMO_BACKEND": "no", "ACCELERATE_USE_CPU": "False"}
    return [sys.executable, "-m", module, "--config", str(recipe_file)], env


def run_training(module: str, recipe: Mapping[str, Any], stage_dir: str | Path, *, accelerate_config: str = "",
                 num_processes: int = 1) -> float:
    """Write the recipe as <stage>_recipe.yaml in the stage folder, launch the module (`launch_command`), stream
    its output, keep it in train.log; return the wall time in seconds. A non-zero exit raises with the log's tail."""
    stage_dir = Path(stage_dir)
    recipe_file = write_recipe(recipe, stage_dir / f"{module.rsplit('.', 1)[-1]}_recipe.yaml")
    cmd, env = launch_command(module, recipe_file, accelerate_config=accelerate_config, num_processes=num_processes)
    log_path = stage_dir / "train.log"
    print("$", *(f"{k}={v}" for k, v in env.items()), *cmd, flush=True)
    start = time.time()
    tail: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log, subprocess.Popen(
        cmd, cwd=paths.repo_root(), env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as proc:
        log.write("$ " + " ".join([*(f"{k}={v}" for k, v in env.items()), *cmd]) + "\n")
        for line in proc.stdout:
            log.write(line)
            sys.stdout.write(line)
            tail = (tail + [line])[-40:]
        proc.wait()
    seconds = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{module} exited with code {proc.returncode} after {seconds:.0f} s; "
                           f"full log: {log_path}\n" + "".join(tail))
    print(f"{module} finished in {seconds:.0f} s (log: {log_path})")
    return seconds
