"""Markdown -> one self-contained HTML page (the `markdown` library; local images inlined)."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path

import markdown as markdown_lib

STYLE = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}"
         "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;"
         "padding:3px 7px}th{background:#f3f3f3}img{max-width:100%}code{background:#f3f3f3}")
_IMAGE = re.compile(r'<img alt="([^"]*)" src="([^"]+)"\s*/?>')


def markdown_to_html(text: str, base: Path, *, title: str) -> str:
    """`text` rendered (tables included), each image under `base` inlined as base64 PNG."""
    body = markdown_lib.markdown(text, extensions=["tables"])

    def inline(match: re.Match[str]) -> str:
        alt, src = match.group(1), match.group(2)
        path = base / html.unescape(src)
        if not path.is_file():
            return f"[missing image {html.escape(path.name)}]"
        data = base64.b64encode(path.read_bytes()).decode()
        return f'<img alt="{alt}" src="data:image/png;base64,{data}">'

    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body>{_IMAGE.sub(inline, body)}"
            f"</body></html>\n")
