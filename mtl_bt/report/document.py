"""A tiny report model rendered twice: Markdown (links to PNGs) and self-contained HTML.

One list of blocks feeds both renderers, so report.md and report.html can never disagree on a
number. The HTML embeds every plot as a base64 data URI: one file to mail or archive.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Table:
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Image:
    path: Path  # absolute path of the PNG
    caption: str = ""


@dataclass
class Code:
    text: str
    language: str = ""


Block = Heading | Paragraph | Table | Image | Code


@dataclass
class Document:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block) -> None:
        self.blocks.append(block)


def fmt(value: object, digits: int = 4) -> str:
    """Numbers as text for tables: NaN/None as an em dash, floats with ``digits`` significant."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value))  # counts (trades, bars) read back as floats
        return f"{value:.{digits}g}" if abs(value) < 1e5 else f"{value:,.0f}"
    return str(value)


def _cell_md(value: object) -> str:
    return fmt(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(frame: pd.DataFrame) -> str:
    cols = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_cell_md(v) for v in row) + " |")
    return "\n".join(lines)


def to_markdown(doc: Document, base: Path) -> str:
    """Markdown with image links relative to ``base`` (the folder report.md is written to)."""
    out = [f"# {doc.title}", ""]
    for block in doc.blocks:
        if isinstance(block, Heading):
            out += ["#" * block.level + " " + block.text, ""]
        elif isinstance(block, Paragraph):
            out += [block.text, ""]
        elif isinstance(block, Table):
            if block.caption:
                out += [block.caption, ""]
            out += [table_markdown(block.frame), ""]
        elif isinstance(block, Image):
            rel = Path(block.path).resolve().relative_to(base.resolve()).as_posix()
            out += [f"![{block.caption}]({rel})", ""]
        elif isinstance(block, Code):
            out += [f"```{block.language}", block.text.rstrip("\n"), "```", ""]
    return "\n".join(out)


_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#222}
table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3} td:first-child,th:first-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:0.5em 0}
pre{background:#f7f7f7;padding:0.8em;overflow-x:auto;font-size:0.85em}
figcaption{color:#555;font-size:0.9em}
"""


def _inline(text: str) -> str:
    """Escape, then render `code` spans (the only inline markup the reports use)."""
    parts = html.escape(text).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def table_html(frame: pd.DataFrame) -> str:
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in row) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def to_html(doc: Document) -> str:
    """Self-contained HTML: PNGs are embedded as base64 data URIs."""
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(doc.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(doc.title)}</h1>",
    ]
    for block in doc.blocks:
        if isinstance(block, Heading):
            level = min(6, max(2, block.level))
            out.append(f"<h{level}>{_inline(block.text)}</h{level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{_inline(block.text)}</p>")
        elif isinstance(block, Table):
            if block.caption:
                out.append(f"<p>{_inline(block.caption)}</p>")
            out.append(table_html(block.frame))
        elif isinstance(block, Image):
            data = base64.b64encode(Path(block.path).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{html.escape(block.caption)}" '
                f'src="data:image/png;base64,{data}"><figcaption>{html.escape(block.caption)}'
                "</figcaption></figure>"
            )
        elif isinstance(block, Code):
            out.append(f"<pre><code>{html.escape(block.text)}</code></pre>")
    out.append("</body></html>")
    return "\n".join(out)
