"""The HTML of a report: one self-contained page (inline CSS, inline SVG; no script, font, image or link to
fetch), sections with ids, light tables. Every piece of user text goes through `esc`."""

from __future__ import annotations

import html
import math
from typing import Any, Iterable, Optional, Sequence

__all__ = ["esc", "page", "section", "table", "number", "definition_list", "note"]

_CSS = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d2330; margin: 0;
       background: #f6f7f9; }
header { background: #1d2b44; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .facts span { margin-right: 18px; opacity: .9; }
header .headline { font-size: 18px; font-weight: 600; }
nav { padding: 8px 28px; background: #e8ebf0; font-size: 13px; }
nav a { margin-right: 14px; color: #1d4e89; text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1200px; }
section { background: #fff; border: 1px solid #dde1e7; border-radius: 6px; padding: 12px 18px; margin: 16px 0; }
section h2 { font-size: 17px; margin: 4px 0 10px; }
table { border-collapse: collapse; margin: 8px 0; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e6eb; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.best td { background: #fff6d6; }
.figure svg { max-width: 100%; height: auto; }
.scroll { overflow-x: auto; }
.figures { display: flex; flex-wrap: wrap; gap: 12px; }
pre { background: #f3f4f6; padding: 10px; overflow-x: auto; font-size: 12px; }
.note { color: #5a6272; font-size: 13px; }
.failed { color: #a12020; }
"""


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def number(value: Any, digits: int = 4) -> str:
    """A table cell's text for a number: ints with thousands separators, floats to `digits` significant digits
    (one decimal from 1,000 on)."""
    if value is None:
        return "–"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:,.1f}" if abs(value) >= 1000 else f"{value:.{digits}g}"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]], *, best_row: Optional[int] = None,
          raw_columns: Sequence[int] = ()) -> str:
    """A table; numbers right-aligned. Cells in `raw_columns` are HTML already (links), the rest are escaped."""
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            if j in raw_columns:
                cells.append(f"<td>{cell}</td>")
            elif isinstance(cell, (int, float)) and not isinstance(cell, bool) or cell is None:
                cells.append(f'<td class="num">{number(cell)}</td>')
            else:
                cells.append(f"<td>{esc(cell)}</td>")
        css = ' class="best"' if i == best_row else ""
        body.append(f"<tr{css}>{''.join(cells)}</tr>")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def definition_list(pairs: Iterable[tuple[str, Any]]) -> str:
    return table(["", ""], [(k, v) for k, v in pairs])


def note(text: str) -> str:
    return f'<p class="note">{esc(text)}</p>'


def section(section_id: str, title: str, *parts: str) -> str:
    """A section with an id (the report's anchors and the browser test's selectors); `parts` are HTML."""
    return f'<section id="{esc(section_id)}"><h2>{esc(title)}</h2>{"".join(parts)}</section>'


def page(title: str, facts: Sequence[tuple[str, Any]], headline: str, sections: Sequence[tuple[str, str, str]]) -> str:
    """The whole document. `sections`: (id, title, inner html) in page order; the nav links to each."""
    nav = "".join(f'<a href="#{esc(sid)}">{esc(name)}</a>' for sid, name, _ in sections)
    fact_html = "".join(f"<span>{esc(k)}: <b>{esc(v)}</b></span>" for k, v in facts)
    body = "".join(section(sid, name, content) for sid, name, content in sections)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f'<header><h1>{esc(title)}</h1><div class="facts">{fact_html}</div>'
            f'<div class="headline">{esc(headline)}</div></header><nav>{nav}</nav><main>{body}</main></body></html>\n')
