"""Where the 19 real edit pairs are: $EDITCAPTION_REAL_PAIRS, else ../shared/data/real-pairs beside the checkout."""
import os
from pathlib import Path

import pytest

from editcaption import paths

REAL_PAIRS = Path(os.environ.get("EDITCAPTION_REAL_PAIRS") or paths.repo_root().parent / "shared" / "data" / "real-pairs")


def require_real_pairs() -> Path:
    """The folder; skipped outside CI when absent (a plain clone has no shared/), a failure in CI."""
    if not (REAL_PAIRS / "manifest.jsonl").exists():
        message = f"no real pairs at {REAL_PAIRS} (set EDITCAPTION_REAL_PAIRS)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return REAL_PAIRS
