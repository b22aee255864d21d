"""The report as Markdown (figures beside it as PNGs) or as one self-contained HTML file (figures
inlined as base64 data URIs), both rendered from the same list of blocks."""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass

from ..records import FigureData


@dataclass
class Block:
    kind: str  # h1 | h2 | p | ul | figure | table
    text: str = ""
    items: tuple[str, ...] = ()
    figure: FigureData | None = None
    png: bytes = b""
    headers: tuple[str, ...] = ()
    rows: tuple[tuple[str, ...], ...] = ()


def markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "ul":
            out.append("\n".join(f"- {i}" if not i.startswith("  - ") else i for i in b.items))
        elif b.kind == "figure" and b.figure is not None:
            f = b.figure
            out.append(f"![{f.title}]({f.file})\n\n*{f.caption}*")
        elif b.kind == "table":
            out.append(
                "\n".join(
                    ["| " + " | ".join(b.headers) + " |", "|" + "---|" * len(b.headers)]
                    + ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in b.rows]
                )
            )
    return "\n\n".join(out) + "\n"


_CODE = re.compile(r"`([^`]+)`")


def _inline(text: str) -> str:
    """Escape, then `code` spans as <code>."""
    return _CODE.sub(r"<code>\1</code>", html.escape(text))


STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
img{max-width:100%;border:1px solid #eee}.caption{font-style:italic;color:#444}
table{border-collapse:collapse;font-size:.85em}td,th{border:1px solid #ccc;padding:.25em .5em;text-align:right}
code{background:#f4f4f4;padding:0 .2em}ul.verdict li{margin:.2em 0}"""


def html_page(blocks: list[Block], title: str) -> str:
    out = [
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body>"
    ]
    for b in blocks:
        if b.kind in ("h1", "h2"):
            out.append(f"<{b.kind}>{_inline(b.text)}</{b.kind}>")
        elif b.kind == "p":
            out.append(f"<p>{_inline(b.text)}</p>")
        elif b.kind == "ul":
            out.append("<ul class='verdict'>" + "".join(_item(i) for i in b.items) + "</ul>")
        elif b.kind == "figure" and b.figure is not None:
            data = base64.b64encode(b.png).decode("ascii")
            out.append(
                f"<figure><img alt='{html.escape(b.figure.title)}' src='data:image/png;base64,{data}'>"
                f"<figcaption class='caption'>{_inline(b.figure.caption)}</figcaption></figure>"
            )
        elif b.kind == "table":
            head = "".join(f"<th>{html.escape(h)}</th>" for h in b.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _item(text: str) -> str:
    if text.startswith("  - "):
        return f"<li style='list-style:circle;margin-left:1.5em'>{_inline(text[4:])}</li>"
    return f"<li>{_inline(text)}</li>"
