"""A run folder readable in a browser without a kernel: every executed notebook as HTML (images embedded) and
outputs/<run>/index.html linking them, with each stage's tables inlined and its figures shown."""
from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import quote

SITE_DIR = "html"  # the exported notebooks, under the run folder
MAX_DEPTH = 2  # tables and figures are looked for in a stage folder and one level below it
SKIP_FOLDERS = {"images", "checkpoints", "final", "merged", "html"}  # image dumps and model folders are not figures

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.5em; text-align: left; }
th { background: #f2f2f2; }
figure { display: inline-block; margin: 0.5em; vertical-align: top; }
figure img { max-width: 560px; border: 1px solid #ddd; }
figcaption { font-size: 0.8em; color: #555; }
.failed { color: #C44E52; font-weight: bold; }
"""


def export_notebook(notebook: str | Path, out: str | Path) -> Path:
    """One executed notebook as a self-contained HTML page (outputs and attachments embedded)."""
    from nbconvert import HTMLExporter

    body, _ = HTMLExporter(embed_images=True).from_filename(str(notebook))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body, encoding="utf-8")
    return out


def _natural(path: Path) -> list:
    """Sort key that puts table2 before table11."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", path.as_posix())]


def _stage_files(stage: Path, suffix: str) -> list[Path]:
    """Files with `suffix` in a stage folder (to MAX_DEPTH), outside image dumps and model folders, sorted."""
    found = []
    for path in sorted(stage.rglob(f"*{suffix}"), key=_natural):
        parts = path.relative_to(stage).parts
        if len(parts) <= MAX_DEPTH and not SKIP_FOLDERS.intersection(parts[:-1]):
            found.append(path)
    return found


def _link(path: Path, run_dir: Path) -> str:
    return quote(path.relative_to(run_dir).as_posix())


def _markdown_html(text: str) -> str:
    import mistune

    return mistune.create_markdown(escape=True, plugins=["table"])(text)


def _stage_section(stage: Path, run_dir: Path, page: Path | None, status: dict | None) -> str:
    title = html.escape(stage.name)
    out = [f'<section id="{quote(stage.name)}"><h2>{title}</h2>']
    if page is not None:
        out.append(f'<p><a href="{_link(page, run_dir)}">executed notebook (HTML)</a>')
        if status:
            css = ' class="failed"' if status["status"] != "ok" else ""
            out.append(f' · <span{css}>{html.escape(status["status"])}</span>, {status["seconds"]:.0f} s')
        out.append("</p>")
    for table in _stage_files(stage, ".md"):
        out.append(f"<h3>{html.escape(table.relative_to(stage).as_posix())}</h3>")
        out.append(_markdown_html(table.read_text(encoding="utf-8")))
    for figure in _stage_files(stage, ".png"):
        pdf = figure.with_suffix(".pdf")
        caption = html.escape(figure.relative_to(stage).as_posix())
        if pdf.exists():
            caption += f' (<a href="{_link(pdf, run_dir)}">PDF</a>)'
        out.append(f'<figure><a href="{_link(figure, run_dir)}"><img src="{_link(figure, run_dir)}" alt="{caption}"></a>'
                   f"<figcaption>{caption}</figcaption></figure>")
    out.append("</section>")
    return "\n".join(out)


def build_site(run_dir: str | Path, *, title: str | None = None) -> Path:
    """Export every executed notebook of the run (NN_*.ipynb) to html/, then write index.html linking them with each
    stage's tables (Markdown files, inlined) and figures (PNG, relative links); return index.html's path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run folder")
    notebooks = sorted(run_dir.glob("[0-9][0-9]_*.ipynb"))
    pages = {nb.stem: export_notebook(nb, run_dir / SITE_DIR / f"{nb.stem}.html") for nb in notebooks}
    summary_file = run_dir / "run.json"
    summary = json.loads(summary_file.read_text()) if summary_file.exists() else {}
    statuses = {Path(s["notebook"]).stem: s for s in summary.get("stages", [])}
    stages = sorted({p.name for p in run_dir.iterdir() if p.is_dir() and p.name[:2].isdigit()} | set(pages))
    title = title or f"EditCaption run {run_dir.name}"
    head = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
            f"<style>{STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>"]
    if summary:
        head.append(f"<p>profile: {html.escape(str(summary.get('profile', '?')))}</p>")
    head.append("<ul>" + "".join(f'<li><a href="#{quote(s)}">{html.escape(s)}</a>'
                                 + (f' · <a href="{_link(pages[s], run_dir)}">notebook</a>' if s in pages else "")
                                 + "</li>" for s in stages) + "</ul>")
    body = [_stage_section(run_dir / s, run_dir, pages.get(s), statuses.get(s)) if (run_dir / s).is_dir()
            else f'<section id="{quote(s)}"><h2>{html.escape(s)}</h2><p><a href="{_link(pages[s], run_dir)}">'
                 "executed notebook (HTML)</a> · wrote no stage folder</p></section>" for s in stages]
    index = run_dir / "index.html"
    index.write_text("\n".join(head + body + ["</body></html>"]) + "\n", encoding="utf-8")
    return index
