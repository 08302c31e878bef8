"""HTML pieces of the run report (:mod:`cnnlab.viz.report`): escaped text, tables, notes, embedded pictures.

>>> table(["a", "b"], [[1, "<x>"]])
'<table><tr><th class=l>a</th><th>b</th></tr><tr><td class=l>1</td><td>&lt;x&gt;</td></tr></table>'
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from cnnlab.viz.grid import png_data_uri

__all__ = ["esc", "figure", "note", "table"]


def esc(text: object) -> str:
    return html.escape(str(text))


def figure(picture: np.ndarray, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{png_data_uri(picture)}" alt="{esc(alt)}">'
    return f"<figure>{tag}<figcaption>{esc(caption)}</figcaption></figure>" if caption else tag


def note(text: str, cls: str = "note") -> str:
    return f'<p class="{cls}">{esc(text)}</p>'


def table(header: list[str], rows: Sequence[Sequence[object]], left: int = 1) -> str:
    def cells(tag: str, values: Sequence[object]) -> str:
        return "".join(f"<{tag}{' class=l' if i < left else ''}>{esc(v)}</{tag}>" for i, v in enumerate(values))

    body = "".join(f"<tr>{cells('td', r)}</tr>" for r in rows)
    return f"<table><tr>{cells('th', list(header))}</tr>{body}</table>"
