"""Every notebook's code, read without running it: a name used and never defined or imported fails here, also
in a branch the smoke profile does not take (notebook 03's sft-model branch once named `paths` unimported)."""
import json
import subprocess
import sys

from editcaption import config


def undefined_names(*paths) -> str:
    """ruff's undefined-name check (F821) over notebooks; '' when there is none."""
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "--select", "F821", "--output-format",
                          "concise", *map(str, paths)], capture_output=True, text=True)
    return "" if out.returncode == 0 else out.stdout + out.stderr


def test_no_notebook_uses_an_undefined_name():
    notebooks = config.list_notebooks()
    assert len(notebooks) == 9
    assert undefined_names(*notebooks) == ""


def test_the_check_finds_a_name_used_only_in_a_branch(tmp_path):
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": ["source = ''\n", "model = paths.sft_model('', 'run') if source == 'sft-model' else ''\n"]}]
    notebook = tmp_path / "probe.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    assert "F821 Undefined name `paths`" in undefined_names(notebook)
