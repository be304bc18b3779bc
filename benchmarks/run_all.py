"""Run every benchmarks/bench_*.py (each exposes run() -> dict and prints its own figures)."""
import importlib.util
import json
import sys
from pathlib import Path

here = Path(__file__).parent
results = {}
for path in sorted(here.glob("bench_*.py")):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    print(f"== {path.stem}")
    results[path.stem] = module.run()
out = here.parent / "outputs" / "benchmarks.json"
out.parent.mkdir(exist_ok=True)
out.write_text(json.dumps(results, indent=2) + "\n")
print(f"wrote {out}")
sys.exit(0)
