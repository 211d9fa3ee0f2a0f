"""How ``servo values show`` prints a value: a table's head, JSON, or a repr.

- Tables (Arrow, pandas, polars): the first `HEAD_ROWS` rows under their column
  names, cells cut to fit, within 80 columns.
- JSON data: pretty-printed, at most `JSON_LINES` lines (``--json`` has it all).
- Anything else (pickled objects): a repr cut to about `REPR_CHARS` characters.
"""

from __future__ import annotations

import io
import json
import reprlib
from dataclasses import dataclass
from typing import Any

from rich import box
from rich.console import Console
from rich.table import Table

#: Table rows shown.
HEAD_ROWS = 10
#: Lines of pretty JSON shown.
JSON_LINES = 200
#: Characters of a repr shown (about).
REPR_CHARS = 2000
#: Columns the text fits in.
WIDTH = 80
_CELL_CHARS = 40


@dataclass(frozen=True, slots=True)
class Preview:
    """A value made ready to print.

    Attributes:
        kind: ``table``, ``json`` or ``repr``.
        columns: a table's column names (else empty).
        head: a table's first rows as dicts (else empty).
        value: the JSON value (kind ``json``), else None.
        text: a repr (kind ``repr``), else "".
    """

    kind: str
    columns: tuple[str, ...] = ()
    head: tuple[dict[str, Any], ...] = ()
    value: Any = None
    text: str = ""


def _arrow_head(value: Any, fmt: str) -> Any:
    import pyarrow as pa

    if fmt == "parquet:pandas":
        return pa.Table.from_pandas(value.head(HEAD_ROWS), preserve_index=False)
    if fmt == "parquet:polars":
        return value.head(HEAD_ROWS).to_arrow()
    return value.slice(0, HEAD_ROWS)


def _short_repr(value: Any) -> str:
    shortener = reprlib.Repr()
    shortener.maxstring = 200
    shortener.maxother = REPR_CHARS
    shortener.maxlist = shortener.maxtuple = shortener.maxdict = shortener.maxset = 50
    shortener.maxlevel = 6
    text = shortener.repr(value)
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 1] + "…"


def preview(value: Any, fmt: str) -> Preview:
    """Make `value`, stored as `fmt`, ready to print."""
    if fmt.startswith("parquet:"):
        head = _arrow_head(value, fmt)
        return Preview("table", tuple(head.column_names), tuple(head.to_pylist()))
    if fmt == "json":
        return Preview("json", value=value)
    return Preview("repr", text=_short_repr(value))


def _cell(value: Any) -> str:
    text = "null" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= _CELL_CHARS else text[: _CELL_CHARS - 1] + "…"


def render_text(found: Preview, rows: int | None) -> str:
    """`found` as text within `WIDTH` columns (JSON and repr lines may be longer)."""
    if found.kind == "table":
        table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
        for name in found.columns:
            table.add_column(name, overflow="ellipsis", no_wrap=True)
        for row in found.head:
            table.add_row(*(_cell(row[name]) for name in found.columns))
        drawn = io.StringIO()
        Console(file=drawn, width=WIDTH, color_system=None, highlight=False).print(table)
        out = io.StringIO()
        out.writelines(line.rstrip() + "\n" for line in drawn.getvalue().splitlines())
        shown = len(found.head)
        if rows is not None and rows > shown:
            out.write(f"(first {shown} of {rows} rows)\n")
        return out.getvalue()
    if found.kind == "json":
        lines = json.dumps(found.value, indent=2, ensure_ascii=False).splitlines()
        if len(lines) > JSON_LINES:
            more = len(lines) - JSON_LINES
            lines = [*lines[:JSON_LINES], f"… {more} more lines (--json prints the whole value)"]
        return "\n".join(lines) + "\n"
    return found.text + "\n"


def payload(found: Preview) -> dict[str, Any]:
    """The preview's part of ``values show --json``."""
    if found.kind == "table":
        head = json.loads(json.dumps(list(found.head), default=str))
        return {"kind": "table", "columns": list(found.columns), "head": head}
    if found.kind == "json":
        return {"kind": "json", "value": found.value}
    return {"kind": "repr", "repr": found.text}
