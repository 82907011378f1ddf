"""CSV files for spreadsheets, written a row at a time so an export of any size streams.

Cells are quoted by the `csv` module (commas, quotes and line breaks inside a value survive), and a
cell that a spreadsheet would read as a formula (it starts with `=`, `+`, `-`, `@`, a tab or a
carriage return) gets a leading `'`: a buyer who types `=HYPERLINK(...)` as their name must not
have it run on the organizer's computer (OWASP's "CSV injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterable, AsyncIterator, Iterable

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
# Excel reads a file that starts with this mark as UTF-8 (names with accents stay readable).
BYTE_ORDER_MARK = "\ufeff"


def safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def csv_line(cells: Iterable[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow([safe_cell(cell) for cell in cells])
    return buffer.getvalue()


async def csv_stream(header: Iterable[str], rows: AsyncIterable[Iterable[object]]) -> AsyncIterator[bytes]:
    """The file as it is written: the header line first, then each row as it comes."""
    yield (BYTE_ORDER_MARK + csv_line(header)).encode()
    async for row in rows:
        yield csv_line(row).encode()
