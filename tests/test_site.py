"""A run folder becomes a browsable site: executed notebooks as HTML and an index whose figures load in headless
Chromium."""
import html
import json
import os
import re
import shutil
import subprocess

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from PIL import Image

from editcaption.reporting import site, tables

CHROMIUM_INSTALL = "apt-get install -y chromium"
CHECK_SCRIPT = """<script>
window.addEventListener('load', () => {
  const images = Array.from(document.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src').slice(0, 80));
  const out = document.createElement('div');
  out.id = 'img-check';
  out.textContent = JSON.stringify({n: images.length, broken: broken});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found:
        return found
    message = f"headless Chromium not found; install it with `{CHROMIUM_INSTALL}`"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _images_in_chromium(page, tmp_path) -> dict:
    """Open a copy of `page` (same folder, so relative links hold) with CHECK_SCRIPT in headless Chromium and return
    what the script found: the number of <img> and the sources of those that did not load."""
    probe = page.with_name(f"probe_{page.name}")
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", CHECK_SCRIPT + "</body>"), encoding="utf-8")
    cmd = [_chromium(), "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
           f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=10000", "--dump-dom",
           probe.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    probe.unlink()
    match = re.search(r'<div id="img-check">(.*?)</div>', proc.stdout)
    assert match, f"Chromium printed no check result (rc {proc.returncode}): {proc.stderr[-1500:]}"
    return json.loads(html.unescape(match.group(1)))


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A tiny executed run: one notebook with a plot output, its stage folder with a PNG, a table and a run.json."""
    run = tmp_path_factory.mktemp("site") / "fake"
    stage = run / "01_fake"
    stage.mkdir(parents=True)
    cells = [nbformat.v4.new_markdown_cell("# 01 · fake stage"),
             nbformat.v4.new_code_cell("import io\nfrom IPython.display import Image, display\nfrom PIL import Image as Pil\n"
                                       "buffer = io.BytesIO()\nPil.new('RGB', (30, 20), (0, 150, 0)).save(buffer, format='PNG')\n"
                                       "display(Image(data=buffer.getvalue()))")]
    nb = nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "language": "python",
                                                                        "display_name": "Python 3"}})
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    nbformat.write(nb, run / "01_fake.ipynb")
    Image.new("RGB", (40, 30), (200, 30, 30)).save(stage / "plot one.png")  # a space: links must be URL-quoted
    (stage / "figures").mkdir()
    Image.new("RGB", (20, 20), (30, 30, 200)).save(stage / "figures" / "nested.png")
    (stage / "figures" / "nested.pdf").write_bytes(b"%PDF-1.4\n")
    (stage / "images").mkdir()
    Image.new("RGB", (8, 8)).save(stage / "images" / "pair_source.png")  # an image dump, not a figure
    tables.write_table(pd.DataFrame({"S": ["3.100 [2.900, 3.300]"]}, index=pd.Index(["hae <b>"], name="model")),
                       stage, "table3", caption="Scores of the fake run")
    (run / "run.json").write_text(json.dumps({"profile": "fake", "stages": [
        {"notebook": "01_fake.ipynb", "executed": str(run / "01_fake.ipynb"), "seconds": 3.0, "status": "ok",
         "metrics": {}}]}))
    site.build_site(run)
    return run


def test_index_links_notebooks_tables_and_figures(run_dir):
    index = (run_dir / "index.html").read_text()
    assert 'href="html/01_fake.html"' in index
    assert 'src="01_fake/plot%20one.png"' in index and 'src="01_fake/figures/nested.png"' in index
    assert 'href="01_fake/figures/nested.pdf"' in index
    assert "pair_source.png" not in index
    assert "<table>" in index and "3.100 [2.900, 3.300]" in index
    assert "hae &lt;b&gt;" in index  # cell text escaped, not markup
    assert "ok</span>, 3 s" in index
    page = (run_dir / "html" / "01_fake.html").read_text()
    assert 'src="data:image/png;base64' in page and "01 · fake stage" in page


def test_figures_load_in_headless_chromium(run_dir, tmp_path):
    result = _images_in_chromium(run_dir / "index.html", tmp_path)
    assert result == {"n": 2, "broken": []}
    notebook = _images_in_chromium(run_dir / "html" / "01_fake.html", tmp_path)
    assert notebook["n"] >= 1 and notebook["broken"] == []


def test_the_chromium_check_sees_a_broken_figure(run_dir, tmp_path):
    page = run_dir / "broken.html"
    page.write_text('<html><body><img src="01_fake/missing.png"><img src="01_fake/plot%20one.png"></body></html>')
    assert _images_in_chromium(page, tmp_path) == {"n": 2, "broken": ["01_fake/missing.png"]}


def test_missing_run_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder"):
        site.build_site(tmp_path / "nope")


def test_without_chromium_the_check_skips_locally_and_fails_in_ci(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        _chromium()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium"):
        _chromium()
