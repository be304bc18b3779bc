"""List every cell that differs between two run folders (`outputs/<run>/`): each metrics.json value and each
CSV table cell, matched by relative path. Timings, versions and paths are left out.

    python scripts/compare_runs.py outputs/before outputs/after
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any, Iterator

import pandas as pd

# Keys left out, by the end of their name (timings, versions, where files lie); "direction" is kept, "output_dir" not.
SKIPPED = ("seconds", "duration", "per_s", "per_second", "git_sha", "platform", "packages", "_path", "_dir")


def _differences(a: Any, b: Any, where: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            if key in a and key in b:
                yield from _differences(a[key], b[key], f"{where}.{key}")
            else:
                yield f"{where}.{key}", a.get(key, "<missing>"), b.get(key, "<missing>")
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            yield from _differences(x, y, f"{where}[{i}]")
    elif a != b and not (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)):
        yield where, a, b


def _table(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return None


def compare(before: Path, after: Path) -> Iterator[tuple[str, Any, Any]]:
    for path in sorted(before.rglob("metrics.json")):
        other = after / path.relative_to(before)
        if other.exists():
            yield from _differences(json.loads(path.read_text()), json.loads(other.read_text()),
                                    str(path.relative_to(before)))
    for path in sorted(before.rglob("*.csv")):
        name, other = str(path.relative_to(before)), after / path.relative_to(before)
        a, b = _table(path), _table(other) if other.exists() else None
        if a is None and b is None:
            continue
        if a is None or b is None or a.shape != b.shape:
            yield name, None if a is None else a.shape, None if b is None else b.shape
            continue
        for column in a.columns:
            yield from ((f"{name}[{i},{column}]", x, y) for i, (x, y) in enumerate(zip(a[column], b[column]))
                        if x != y and not (pd.isna(x) and pd.isna(y)))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    before, after = (Path(p) for p in argv)
    for folder in (before, after):
        if not folder.is_dir():
            print(f"{folder}: not a run folder", file=sys.stderr)
            return 2
    for where, a, b in compare(before, after):
        key = where.rsplit(".", 1)[-1].split("[")[0].lower()
        if not key.endswith(SKIPPED) and ".packages." not in where:
            print(f"{where} | {a} | {b}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
