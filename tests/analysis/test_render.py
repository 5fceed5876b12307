"""Rendering: Markdown from the blocks, HTML from that Markdown (markdown-it-py), store text
escaped in both."""

import base64

import pandas as pd

from analysis.render import Block, literal, render_html, render_markdown


def test_html_is_the_markdown_rendered_with_figures_inlined():
    png = b"\x89PNG\r\n\x1a\nnot really"
    blocks = [
        Block("h1", "T"),
        Block("p", "A `code` and **bold** line"),
        Block("table", table=pd.DataFrame({"name": ["a|b", "<i>"], "value": ["1.0", "2.0"]})),
        Block("figure", "Alt text", name="f.png", png=png),
    ]
    md = render_markdown(blocks)
    assert "| a\\|b | 1.0 |" in md and "![Alt text](figures/f.png)" in md
    html = render_html("T & co", md, {"f.png": png})
    assert "<title>T &amp; co</title>" in html
    assert "<code>code</code>" in html and "<strong>bold</strong>" in html
    assert html.count("<td>") == 4  # the escaped pipe stays inside its cell
    assert "<td>a|b</td>" in html and "<td>&lt;i&gt;</td>" in html
    assert f'src="data:image/png;base64,{base64.b64encode(png).decode()}" alt="Alt text"' in html
    assert "figures/" not in html


def test_literal_store_text_reads_the_same_in_markdown_and_html():
    text = "a_b *c* `d` [e](f) <g> h|i"
    md = render_markdown([Block("p", literal(text)), Block("list", items=[literal(text)])])
    assert md.startswith("a\\_b \\*c\\* \\`d\\` \\[e\\](f) \\<g\\> h\\|i\n")
    html = render_html("t", md, {})
    shown = "a_b *c* `d` [e](f) &lt;g&gt; h|i"
    assert f"<p>{shown}</p>" in html and f"<li>{shown}</li>" in html
    assert literal("two\nlines") == "two lines"  # a list item stays one item
