"""One smoke run shared by the notebook tests: `editcaption run --profile smoke` with notebook 04's budget sweep and
a second training seed switched on, run once per session. Tests read it and never write into it (a test that
reruns a notebook copies the run first)."""
import pytest
import yaml

from editcaption import config, runner

SHARED_RUN = "smoke"
SWEEP = {"dpo_sweep_learning_rates": "1.0e-4,2.0e-4", "dpo_seeds": "0,1"}


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    """(folder holding the run, the runner's results): every notebook of the smoke profile plus SWEEP."""
    root = tmp_path_factory.mktemp("shared-smoke")
    profile = root / "smoke-sweep.yaml"
    profile.write_text(yaml.safe_dump({**config.load_profile("smoke"), **SWEEP}))
    results = runner.run_profile(str(profile), run_name=SHARED_RUN, output_root=str(root), progress=False)
    return root / SHARED_RUN, results
