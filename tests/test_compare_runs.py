"""scripts/compare_runs.py: the cells that differ between two run folders, and nothing else."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(folder: Path, s: float, low: float, seconds: float) -> None:
    stage = folder / "05_automatic_evaluation"
    stage.mkdir(parents=True)
    (stage / "metrics.json").write_text(json.dumps({"S": s, "ci": [low, 2.0], "seconds": seconds,
                                                    "direction": "left" if low < 1.05 else "right",
                                                    "output_dir": str(folder)}))
    (stage / "empty.csv").write_text("")
    (stage / "table3.csv").write_text(f"model,S\nSFT,\"{s:.3f} [{low:.3f}, 2.000]\"\n")


def test_lists_changed_values_and_intervals_but_not_timings(tmp_path):
    _run(tmp_path / "a", 1.5, 1.0, 10.0)
    _run(tmp_path / "b", 1.5, 1.1, 99.0)
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True, check=True).stdout.splitlines()
    assert out == ["05_automatic_evaluation/metrics.json.ci[0] | 1.0 | 1.1",
                   "05_automatic_evaluation/metrics.json.direction | left | right",
                   "05_automatic_evaluation/table3.csv[0,S] | 1.500 [1.000, 2.000] | 1.500 [1.100, 2.000]"]


def test_a_missing_folder_is_named(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(tmp_path / "none"),
                           str(tmp_path)], capture_output=True, text=True)
    assert proc.returncode == 2 and "none: not a run folder" in proc.stderr
