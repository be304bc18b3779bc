"""Launch a training entry point in 2 CPU processes under DeepSpeed ZeRO-3, as the cluster does on GPUs."""
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def launch_zero3_cpu(module: str, recipe: Path, out: Path) -> tuple[subprocess.CompletedProcess, float]:
    """`accelerate launch` of `python -m module --config RECIPE --output_dir OUT` with the small-bucket ZeRO-3 CPU config;
    returns the finished process and its wall seconds."""
    accelerate = Path(sys.executable).with_name("accelerate")
    start = time.perf_counter()
    run = subprocess.run(
        [str(accelerate), "launch", "--config_file", "params/accelerate/zero3_cpu_test.yaml", "--num_processes", "2",
         "-m", module, "--config", str(recipe), "--output_dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    return run, time.perf_counter() - start
