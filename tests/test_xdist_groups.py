"""The suite's two-worker split (tests/conftest.py) only works if xdist sees the groups: were the smoke run's tests
split across workers, the run would be made twice and `make test` would blow its budget without failing."""
import os

import pytest


def test_zero3_group_reaches_the_scheduler(request):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        pytest.skip("runs in one process (-n 0): nothing to group")
    assert request.config.getvalue("loadgroup"), "the suite is meant to run with --dist loadgroup (pyproject addopts)"
    assert request.node.nodeid.endswith("@zero3-port"), (
        f"xdist did not add the group to {request.node.nodeid!r}: this pytest / pytest-xdist pair cannot group")
