"""The append-only JSONL cache every resumable loop writes (captions, LLM-judge replies, EditScore scores).

One JSON object per line, each line written and flushed whole as soon as its result exists, so a killed run
loses at most the line it was writing. Reading skips a line that is not JSON (the torn last line of a killed
writer) and counts it; opening the file to append first ends such a line with a newline, so the next record
starts on a line of its own instead of being glued onto the torn one and lost.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from editcaption.records import RecordError


def read_records(path: str | Path, *, required: tuple[str, ...] = (), what: str = "cache") -> tuple[list[dict], list[int]]:
    """(records in file order, numbers of the lines that are not JSON). A JSON line that is not an object with
    every `required` field raises RecordError naming the file, line and field: the path belongs to something else."""
    path = Path(path)
    if not path.exists():
        return [], []
    records, torn = [], []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                torn.append(number)
                continue
            for field in required:
                if not isinstance(record, dict) or field not in record:
                    raise RecordError(f"not a {what} line (use another cache path)", file=path, row=number,
                                      field=field)
            records.append(record)
    return records, torn


class AppendWriter:
    """Appends one flushed JSON line per record; opens the file (and repairs a torn last line) on first use."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._handle = None

    def append(self, record: dict[str, Any]) -> None:
        if self._handle is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._handle = self.path.open("a+b")
            if self._handle.tell():
                self._handle.seek(-1, os.SEEK_END)
                if self._handle.read(1) != b"\n":
                    self._handle.write(b"\n")
        self._handle.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
        self._handle.flush()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> AppendWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
