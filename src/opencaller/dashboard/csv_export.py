"""CSV downloads of the dashboard: UTF-8, comma-separated, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

from starlette.responses import Response


def cell(text: str) -> str:
    """Keep spreadsheets from running text typed as a formula (a reason, a client string)."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def csv_response(
    filename: str, header: Sequence[str], rows: Iterable[Sequence[object]]
) -> Response:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
