"""The report's blocks written as Markdown (report.md) and as one static HTML page (index.html) with the same content.
The page opens from disk: its style is inline, its images are the PNGs beside it, referenced relatively."""

from __future__ import annotations

import html
import re

from .document import Block

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;max-width:80em;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.4em}
table{border-collapse:collapse;margin:.6em 0;font-size:13px}th,td{border:1px solid #ccc;padding:.25em .5em;
vertical-align:top;text-align:left}th{background:#f2f2f2}tr:nth-child(even) td{background:#fafafa}
img{max-width:100%;border:1px solid #ddd;margin:.5em 0}.missing{color:#8a5a00;font-style:italic}
code{background:#f4f4f4;padding:0 .2em}
"""


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if block.kind == "heading":
            out += ["#" * block.level + " " + block.text, ""]
        elif block.kind == "para":
            out += [block.text, ""]
        elif block.kind == "missing":
            out += [f"_{block.text}_", ""]
        elif block.kind == "list":
            out += [f"- {item}" for item in block.items] + [""]
        elif block.kind == "image":
            out += [f"![{block.items[0]}]({block.text})", ""]
        elif block.kind == "table":
            out.append("| " + " | ".join(_md_cell(h) for h in block.header) + " |")
            out.append("|" + "---|" * len(block.header))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("")
    return "\n".join(out)


def _inline(text: str) -> str:
    """Escaped text with the Markdown this report uses inline: `code` and **bold**."""
    text = html.escape(text)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def page(blocks: list[Block]) -> str:
    title = next((b.text for b in blocks if b.kind == "heading"), "session-kit report")
    out = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
    ]
    for block in blocks:
        if block.kind == "heading":
            out.append(f"<h{block.level}>{_inline(block.text)}</h{block.level}>")
        elif block.kind == "para":
            out.append(f"<p>{_inline(block.text)}</p>")
        elif block.kind == "missing":
            out.append(f'<p class="missing">{_inline(block.text)}</p>')
        elif block.kind == "list":
            out.append("<ul>" + "".join(f"<li>{_inline(item)}</li>" for item in block.items) + "</ul>")
        elif block.kind == "image":
            out.append(f'<p><img src="{html.escape(block.text)}" alt="{html.escape(block.items[0])}"></p>')
        elif block.kind == "table":
            head = "".join(f"<th>{_inline(h)}</th>" for h in block.header)
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
