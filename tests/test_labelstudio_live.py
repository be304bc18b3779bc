"""The live Label Studio path (labelstudio_live.py) against a real Label Studio server on 127.0.0.1.

The server is the `label-studio` package in its own environment (`make labelstudio` builds
.venv-labelstudio: Django and about 1 GB the project does not otherwise need); LABEL_STUDIO_BIN names
another `label-studio` executable. Without the SDK or the server these tests skip and say why; with
EDITCAPTION_REQUIRE_LABELSTUDIO=1 (.ci/run sets it after `make labelstudio`) they fail instead.
"""
import builtins
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from serve_helper import free_port
from test_annotation import _expected_fills, _rows, _truth

from editcaption import annotation as ann
from editcaption import labelstudio_live as live

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c"  # a legacy token for the throw-away test server
REQUIRED = os.environ.get("EDITCAPTION_REQUIRE_LABELSTUDIO") == "1"


def _missing(reason: str):
    if REQUIRED:
        pytest.fail(f"EDITCAPTION_REQUIRE_LABELSTUDIO=1 but {reason}")
    pytest.skip(reason)


def _server_bin() -> str | None:
    for candidate in (os.environ.get("LABEL_STUDIO_BIN"), ROOT / ".venv-labelstudio" / "bin" / "label-studio",
                      shutil.which("label-studio")):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A fresh Label Studio on 127.0.0.1 (own data folder, legacy token on): (url, log path)."""
    try:
        import label_studio_sdk  # noqa: F401
    except ImportError:
        _missing(f"label-studio-sdk is not installed ({live.INSTALL_HINT})")
    binary = _server_bin()
    if binary is None:
        _missing("no Label Studio server: run `make labelstudio` (or set LABEL_STUDIO_BIN)")
    import httpx

    data = tmp_path_factory.mktemp("labelstudio")
    port = free_port()
    env = {**os.environ, "LABEL_STUDIO_USERNAME": "annotator@example.com", "LABEL_STUDIO_PASSWORD": "not-a-secret-1",
           "LABEL_STUDIO_USER_TOKEN": TOKEN, "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
           "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true", "DJANGO_DB": "sqlite"}
    log = data / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen([binary, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port),
                                    "--data-dir", str(data / "data")], stdout=out, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                pytest.fail(f"label-studio exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"label-studio not ready after 180 s:\n{log.read_text()[-3000:]}")
            time.sleep(1)
        yield url, log
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def _annotate(client, project, kind, fills):
    """Label every task of the project as a person would in the app: one submitted annotation each."""
    spec = ann.sheet_spec(kind)
    for task in client.tasks.list(project=project):
        row = fills[spec.key(task.data)]
        result = [{"from_name": f.name, "to_name": spec.texts[0], "type": "textarea" if f.choices is None else "choices",
                   "value": {"text": [row[f.name]]} if f.choices is None else {"choices": [row[f.name]]}}
                  for f in spec.fills if row[f.name]]
        client.annotations.create(id=task.id, result=result, was_cancelled=False)


@pytest.mark.slow
def test_create_label_and_pull_through_a_real_server(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("EDITCAPTION_TEST_LS_KEY", TOKEN)
    kind = "evaluation"
    paths = ann.export_sheet(kind, _rows(kind), tmp_path / "sheet")
    sheet = ann.read_sheet(paths["jsonl"])
    fills = _expected_fills(kind, sheet, _truth(kind, sheet))
    client = live.connect(url, api_key_env="EDITCAPTION_TEST_LS_KEY")
    project = live.create_project(client, kind, tmp_path / "sheet")
    tasks = list(client.tasks.list(project=project))
    assert len(tasks) == len(sheet)
    assert client.projects.get(id=project).label_config.strip() == ann.labelstudio_config(kind).strip()

    spec = ann.sheet_spec(kind)
    first = {spec.key(t.data): fills[spec.key(t.data)] for t in tasks[:3]}
    _annotate(client, project, kind, {**fills, **first})
    result = live.pull_annotations(client, project, kind, tmp_path / "sheet", tmp_path / "store", annotator="ann1")
    assert result.format == "labelstudio" and result.n_accepted == len(sheet) and not result.errors
    assert {spec.key(r): {f.name: r[f.name] for f in spec.fills} for r in result.rows} == fills
    assert all(r["annotator"] == "ann1" for r in result.rows)
    kept = sorted((tmp_path / "sheet").glob(f"labelstudio_export-{project}-*.json"))
    assert len(kept) == 1 and result.source == kept[0]
    assert result.stored.name == "import-0001.jsonl"


@pytest.mark.slow
def test_a_bad_label_in_the_app_is_refused_with_its_task_and_field(server, tmp_path, monkeypatch):
    url, _ = server
    monkeypatch.setenv("EDITCAPTION_TEST_LS_KEY", TOKEN)
    kind = "correction"
    paths = ann.export_sheet(kind, _rows(kind), tmp_path / "sheet")
    sheet = ann.read_sheet(paths["jsonl"])
    fills = _expected_fills(kind, sheet, _truth(kind, sheet))
    client = live.connect(url, api_key_env="EDITCAPTION_TEST_LS_KEY")
    project = live.create_project(client, kind, tmp_path / "sheet", title="bad labels")
    spec = ann.sheet_spec(kind)
    broken_key = spec.key(sheet[1])
    fills[broken_key] = {**fills[broken_key], "severity": ""}  # a required choice left empty
    _annotate(client, project, kind, fills)
    with pytest.raises(ann.SheetImportError, match="severity") as caught:
        live.pull_annotations(client, project, kind, tmp_path / "sheet", tmp_path / "store")
    assert len(caught.value.errors) == 1 and "labelstudio_export-" in str(caught.value.errors[0])
    assert not (tmp_path / "store" / kind).exists()  # nothing stored from a refused file


def test_keys_come_from_the_environment_and_a_missing_sdk_says_how_to_install(monkeypatch, tmp_path):
    monkeypatch.delenv("EDITCAPTION_TEST_LS_KEY", raising=False)
    real_import = builtins.__import__

    def no_sdk(name, *args, **kwargs):
        if name == "label_studio_sdk":
            raise ImportError("No module named 'label_studio_sdk'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_sdk)
    with pytest.raises(ImportError, match=r"pip install -e \.\[labelstudio\]"):
        live.connect("http://127.0.0.1:1", api_key_env="EDITCAPTION_TEST_LS_KEY")
    monkeypatch.setattr(builtins, "__import__", real_import)
    try:
        import label_studio_sdk  # noqa: F401
    except ImportError:
        return
    with pytest.raises(ValueError, match="EDITCAPTION_TEST_LS_KEY"):
        live.connect("http://127.0.0.1:1", api_key_env="EDITCAPTION_TEST_LS_KEY")
    with pytest.raises(FileNotFoundError, match="labelstudio_tasks.json"):
        live.create_project(object(), "evaluation", tmp_path)
