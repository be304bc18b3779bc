"""One smoke run shared by the notebook tests: `editcaption run --profile smoke` with notebook 04's budget sweep and
a second training seed switched on, run once per session. Tests read it and never write into it (a test that
reruns a notebook copies the run first).

The suite runs on two pytest-xdist workers (pyproject's addopts; `-n 0` runs it in one process). Every test that
uses the smoke run goes to one worker, so the run is made once; the tests that launch two processes on the
fixed rendezvous port of params/accelerate/zero3_cpu_test.yaml go to one worker, so they never meet.

Each worker computes with its share of the cores (OMP_NUM_THREADS, set here before torch is imported, so the
notebook kernels and training processes it starts inherit it): two workers of two threads each on two cores made
the smoke run's generation loops ~10x slower than alone (notebook 00: 93 s against 5 s)."""
import os

if os.environ.get("PYTEST_XDIST_WORKER") and "OMP_NUM_THREADS" not in os.environ:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // workers))

import pytest
from smoke_pins import smoke_profile

from editcaption import runner

SHARED_RUN = "smoke"


def pytest_itemcollected(item):
    """Groups for xdist, set as each test is collected (xdist reads them in its collection_modifyitems)."""
    if "smoke_run" in item.fixturenames:
        item.add_marker(pytest.mark.xdist_group("smoke-run"))
    elif "zero3" in item.name:
        item.add_marker(pytest.mark.xdist_group("zero3-port"))


def pytest_collection_modifyitems(items):
    """The smoke run's tests first: the longest chain starts at once on its worker."""
    items.sort(key=lambda item: "smoke_run" not in item.fixturenames)


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(folder holding the run, the runner's results): every notebook of the smoke profile plus smoke_pins.SWEEP."""
    root = tmp_path_factory.mktemp("shared-smoke")
    results = runner.run_profile(str(smoke_profile(root)), run_name=SHARED_RUN, output_root=str(root), progress=False)
    return root / SHARED_RUN, results
