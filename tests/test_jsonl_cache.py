"""The shared append-only JSONL cache: a writer killed mid-line (SIGKILL) loses no complete record, and the next
writer's first record is not glued onto the torn line."""
import json
import signal
import subprocess
import sys

import pytest

from editcaption import jsonl_cache
from editcaption.records import RecordError

CHILD = """
import sys, time
from editcaption import jsonl_cache
path, n = sys.argv[1], int(sys.argv[2])
writer = jsonl_cache.AppendWriter(path)
for i in range(n):
    writer.append({"id": f"a{i}", "payload": "x" * 2000})
with open(path, "ab") as raw:            # the start of one more record, cut where a kill would cut it
    raw.write(b'{"id": "torn", "payload": "xxxx')
    raw.flush()
print("mid-line", flush=True)
time.sleep(60)
"""


def test_sigkill_mid_line_loses_and_duplicates_nothing(tmp_path):
    path = tmp_path / "cache.jsonl"
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), "25"], stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "mid-line"
    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL
    records, torn = jsonl_cache.read_records(path, required=("id",))
    assert [r["id"] for r in records] == [f"a{i}" for i in range(25)] and torn == [26]

    with jsonl_cache.AppendWriter(path) as writer:  # the next run appends after repairing the torn line
        for i in range(3):
            writer.append({"id": f"b{i}"})
    records, torn = jsonl_cache.read_records(path, required=("id",))
    ids = [r["id"] for r in records]
    assert ids == [f"a{i}" for i in range(25)] + ["b0", "b1", "b2"] and len(set(ids)) == len(ids)
    assert torn == [26]  # still counted, never parsed into a record


def test_a_line_of_another_schema_names_file_row_and_field(tmp_path):
    path = tmp_path / "other.jsonl"
    path.write_text(json.dumps({"id": "p0"}) + "\n" + json.dumps({"x": 1}) + "\n", encoding="utf-8")
    with pytest.raises(RecordError) as err:
        jsonl_cache.read_records(path, required=("id",), what="score-cache")
    assert "other.jsonl" in str(err.value) and "row 2" in str(err.value) and "id" in str(err.value)
    assert "score-cache" in str(err.value)


def test_missing_file_reads_empty_and_writer_creates_folders(tmp_path):
    assert jsonl_cache.read_records(tmp_path / "none.jsonl") == ([], [])
    with jsonl_cache.AppendWriter(tmp_path / "a" / "b.jsonl") as writer:
        writer.append({"id": "é"})
    assert (tmp_path / "a" / "b.jsonl").read_text(encoding="utf-8") == '{"id": "é"}\n'
