"""A live Label Studio project through label-studio-sdk: optional, `pip install -e .[labelstudio]`.

The file path needs no server: `annotation.export_sheet` writes `labelstudio_tasks.json` and
`labelstudio_config.xml`, people import them by hand, and the JSON export they download goes through
`annotation.import_sheet`. This module does the same round trip against a running server:

    client = connect("http://127.0.0.1:8080")                   # the key from $LABEL_STUDIO_API_KEY
    project = create_project(client, "evaluation", sheet_dir)   # its config and its tasks
    ...                                                         # people label in the browser
    result = pull_annotations(client, project, "evaluation", sheet_dir, store_dir, annotator="ann1")

`pull_annotations` downloads the project's JSON export, keeps it beside the sheet
(`labelstudio_export-<project>-<UTC time>.json`, written atomically), and imports it with
`annotation.import_sheet`: the same checks of every row, the same append-only store.

For the task images to show, start Label Studio with local-file serving from the sheet's parent folder:
LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED=true LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT=<that folder>, and
export the sheet with labelstudio_url_prefix="/data/local-files/?d=<sheet folder name>/" (or serve the
images elsewhere and pass that URL prefix).
"""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from editcaption import annotation

API_KEY_ENV = "LABEL_STUDIO_API_KEY"
INSTALL_HINT = "pip install -e .[labelstudio]"


def _sdk():
    try:
        import label_studio_sdk
    except ImportError as err:
        raise ImportError(f"the live Label Studio path needs label-studio-sdk, which is not installed: {INSTALL_HINT} "
                          "(or use the file path: annotation.export_sheet, then import_sheet on the JSON export)") from err
    return label_studio_sdk


def connect(url: str, *, api_key_env: str = API_KEY_ENV, timeout: float = 60.0) -> Any:
    """A `label_studio_sdk.LabelStudio` client for the server at `url`; its key (a personal access token or a
    legacy token) comes from the environment variable `api_key_env`, never from parameters."""
    sdk = _sdk()
    key = os.environ.get(api_key_env, "")
    if not key:
        raise ValueError(f"no Label Studio key: set the environment variable {api_key_env} (Account & Settings -> "
                         "Personal Access Token in the Label Studio app)")
    return sdk.LabelStudio(base_url=url.rstrip("/"), api_key=key, timeout=timeout)


def create_project(client: Any, kind: str, sheet_dir: str | Path, *, title: str = "") -> int:
    """A new project with the labelling config of `kind` and the tasks of the sheet exported to `sheet_dir`
    (`annotation.export_sheet(..., formats=(..., "labelstudio"))`); returns its id."""
    paths = {"tasks": Path(sheet_dir) / "labelstudio_tasks.json"}
    if not paths["tasks"].is_file():
        raise FileNotFoundError(f"{paths['tasks']}: export the sheet with the 'labelstudio' format first")
    tasks = json.loads(paths["tasks"].read_text(encoding="utf-8"))
    project = client.projects.create(title=title or f"EditCaption {kind} ({Path(sheet_dir).name})",
                                     label_config=annotation.labelstudio_config(kind))
    client.projects.import_tasks(id=project.id, request=[task["data"] for task in tasks])
    return int(project.id)


def download_export(client: Any, project: int, out_dir: str | Path) -> Path:
    """The project's annotated tasks as Label Studio's JSON export, written atomically into `out_dir`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")
    path = Path(out_dir) / f"labelstudio_export-{project}-{stamp}.json"
    data = b"".join(client.projects.exports.download_sync(project, export_type="JSON"))
    annotation.write_atomic(path, data)
    return path


def pull_annotations(client: Any, project: int, kind: str, sheet_dir: str | Path, store_dir: str | Path, *,
                     annotator: str = "", on_error: str = "raise") -> annotation.ImportResult:
    """Download the project's export (`download_export`, kept in `sheet_dir`) and import it with
    `annotation.import_sheet` against the sheet it came from."""
    path = download_export(client, project, sheet_dir)
    return annotation.import_sheet(kind, path, expected=sheet_dir, store_dir=store_dir, annotator=annotator,
                                   on_error=on_error)
