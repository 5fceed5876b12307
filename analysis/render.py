"""The report's two renderings: Markdown from the blocks, and HTML from that Markdown.

report.md is GitHub-flavoured Markdown whose figures link to figures/<name>. report.html is the
same Markdown rendered by markdown-it-py (CommonMark with tables, raw HTML off, so text from
the store is escaped, never markup), the figures inlined as data URIs: one self-contained page
with no external reference.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass, field
from typing import Literal

import pandas as pd
from markdown_it import MarkdownIt

Kind = Literal["h1", "h2", "p", "list", "table", "figure"]


@dataclass
class Block:
    """One piece of the report: a heading, paragraph, list, table or figure.

    Text is Markdown: the sections write `code` and **bold** themselves, and pass text from
    the store (trial reasons, file names) through `literal`.
    """

    kind: Kind
    text: str = ""  # heading, paragraph, or a figure's alt text
    items: list[str] = field(default_factory=list)
    table: pd.DataFrame | None = None
    name: str = ""  # figure file name, under figures/
    png: bytes = b""


# Backslash-escapable ASCII punctuation that could start markup where store text lands
# (emphasis, code, links, raw HTML, table cells).
_MARKUP = re.compile(r"([\\`*_\[\]<>|])")


def literal(text: str) -> str:
    """`text` as Markdown that shows exactly `text`: for strings from the store, not from us."""
    return _MARKUP.sub(r"\\\1", str(text)).replace("\n", " ")


def render_markdown(blocks: list[Block]) -> str:
    """GitHub-flavoured Markdown; figures link to figures/<name>."""
    parts = []
    for b in blocks:
        if b.kind == "h1":
            parts.append(f"# {b.text}")
        elif b.kind == "h2":
            parts.append(f"## {b.text}")
        elif b.kind == "p":
            parts.append(b.text)
        elif b.kind == "list":
            parts.append("\n".join(f"- {item}" for item in b.items))
        elif b.kind == "table" and b.table is not None:
            parts.append(markdown_table(b.table))
        elif b.kind == "figure":
            parts.append(f"![{b.text}](figures/{b.name})")
    return "\n\n".join(parts) + "\n"


def markdown_table(table: pd.DataFrame) -> str:
    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in table.columns) + " |"
    rule = "|" + "|".join("---" for _ in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join([header, rule, *body])


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem;
     border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f3f3f3; }
img { max-width: 100%; }
code { background: #f3f3f3; padding: 0 0.2rem; }
"""


def render_html(title: str, markdown: str, figures: dict[str, bytes]) -> str:
    """One self-contained page from `markdown`: inline CSS, each image whose source is
    figures/<name> replaced by `figures[name]` as a data URI."""
    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    tokens = parser.parse(markdown)
    for token in tokens:
        for child in token.children or ():
            source = str(child.attrs.get("src", ""))
            if child.type == "image" and source.removeprefix("figures/") in figures:
                png = figures[source.removeprefix("figures/")]
                child.attrs["src"] = f"data:image/png;base64,{base64.b64encode(png).decode()}"
    body = parser.renderer.render(tokens, parser.options, {})
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )
