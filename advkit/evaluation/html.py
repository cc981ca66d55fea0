"""report.html: one self-contained page (inline CSS, images as data URIs, no network).

A few lines of inline script report any picture that fails to decode on the browser console, so
a headless-browser test (and a reader's devtools) sees a broken report as an error.
"""
from __future__ import annotations

import base64
import html
import re
from pathlib import Path

from .page import Page
from .tables import IMAGE, Table

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; margin: .4em 0 1em; font-size: 13px; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f4f4f4; } tr:nth-child(even) td { background: #fafafa; }
.pass { color: #1a7f37; font-weight: bold; } .FAIL { color: #c62828; font-weight: bold; } .skip { color: #888; }
.summary { padding: .6em 1em; background: #f6f8fa; border-radius: 6px; }
img { max-width: 100%; } .note { color: #8a4b00; }
"""

_SCRIPT = """
window.addEventListener("load", function () {
  var broken = Array.prototype.filter.call(document.images, function (img) {
    return !img.complete || img.naturalWidth === 0;
  });
  broken.forEach(function (img) { console.error("advkit report: image failed to load: " + img.alt); });
  document.body.setAttribute("data-images-ok", broken.length === 0 ? "yes" : "no");
});
"""


def render_html(page: Page, folder: Path) -> str:
    """The page: the opening lines, the figures, then each part (tables, text, figures); pictures are
    read from ``folder`` (where the report's files were written)."""
    esc = html.escape
    parts = ["<h1>advkit robustness report</h1>", '<div class="summary">',
             *(f'<p class="note">{esc(line)}</p>' for line in page.warnings),
             *(f"<p>{esc(line)}</p>" for line in page.lines), "</div>",
             *(_img(folder / figure.file, figure.alt) for figure in page.figures)]
    for part in page.parts:
        parts.append(f"<h2>{esc(part.title)}</h2>")
        parts += [_table(t) for t in part.tables]
        if part.text is not None:
            parts.append(markdown_html(part.text, folder))
        for figure in part.figures:
            parts += [f"<h3>{esc(figure.title)}</h3>"] if figure.title else []
            parts.append(_img(folder / figure.file, figure.detail or figure.alt))
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>advkit robustness report</title>'
            f"<style>{_CSS}</style></head>\n<body>\n{body}\n<script>{_SCRIPT}</script>\n</body></html>\n")


_LIST_MARK = re.compile(r"^\s*([-*]|\d+\.)\s+")


def markdown_html(text: str, folder: Path) -> str:
    """HTML for the Markdown subset sections use: paragraphs, ``#`` headings, ``-``/``*``/``1.``
    lists, pipe tables, images (read from ``folder``, embedded), ``**strong**``, ``*emphasis*``,
    ``_emphasis_`` and ``code``. Everything else is shown as text, escaped (no raw HTML)."""
    out = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.splitlines()
        if all(line.lstrip().startswith("|") for line in lines) and len(lines) >= 2 and set(lines[1]) <= set("|-: "):
            rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in lines]
            head = "".join(f"<th>{_inline(c, folder)}</th>" for c in rows[0])
            body = "".join("<tr>" + "".join(f"<td>{_inline(c, folder)}</td>" for c in r) + "</tr>" for r in rows[2:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif all(_LIST_MARK.match(line) for line in lines):
            tag = "ol" if re.match(r"\s*\d+\.", lines[0]) else "ul"
            items = "".join(f"<li>{_inline(_LIST_MARK.sub('', line), folder)}</li>" for line in lines)
            out.append(f"<{tag}>{items}</{tag}>")
        elif re.match(r"#{1,6}\s", block) and len(lines) == 1:
            level = min(len(block) - len(block.lstrip("#")) + 2, 6)  # below the section's own <h2>
            out.append(f"<h{level}>{_inline(block.lstrip('#').strip(), folder)}</h{level}>")
        else:
            out.append(f"<p>{_inline(' '.join(line.strip() for line in lines), folder)}</p>")
    return "\n".join(out)


def _inline(text: str, folder: Path) -> str:
    """Escape ``text``, then turn its images, code, strong and emphasis marks into HTML."""
    pieces, last = [], 0
    for m in IMAGE.finditer(text):
        pieces += [_marks(text[last:m.start()]), _picture(folder / Path(m["src"]).name, m["alt"])]
        last = m.end()
    return "".join(pieces) + _marks(text[last:])


def _marks(text: str) -> str:
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    text = re.sub(r"\*\*(\S(?:.*?\S)?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(\S(?:.*?\S)?)\*(?![\w*])", r"<em>\1</em>", text)
    return re.sub(r"(?<!\w)_(\S(?:.*?\S)?)_(?!\w)", r"<em>\1</em>", text)


def _picture(path: Path, alt: str) -> str:
    """An embedded picture, or its caption in brackets when the report holds no such file."""
    if not path.is_file():
        return html.escape(f"[{alt or path.name}: picture not in the report]")
    return _img(path, alt or path.name, block=False)


def _table(table: Table) -> str:
    esc = html.escape
    status = table.header.index("status") if "status" in table.header else -1
    head = "".join(f"<th>{esc(h)}</th>" for h in table.header)
    rows = "".join("<tr>" + "".join(f'<td class="{esc(c)}">{esc(c)}</td>' if i == status else f"<td>{esc(c)}</td>"
                                    for i, c in enumerate(row)) + "</tr>" for row in table.rows)
    return f"<h3>{esc(table.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>"


def _img(path: Path, alt: str, block: bool = True) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
            ".svg": "image/svg+xml"}.get(path.suffix.lower(), "application/octet-stream")
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    img = f'<img src="data:{mime};base64,{data}" alt="{html.escape(alt)}">'
    return f"<p>{img}</p>" if block else img
