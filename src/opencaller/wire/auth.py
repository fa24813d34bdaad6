"""Where the credentials are: the three uCaller authentication schemes.

Precedence when several are present: the Authorization header, then the body, then the query.
"""

from __future__ import annotations

from .params import Args


def credentials(args: Args) -> tuple[object, object]:
    """(key, service_id) from the first scheme that carries both, else (None, None)."""
    for key, sid in (
        args.header_credentials or (None, None),
        args.body_credentials,
        args.query_credentials,
    ):
        if key not in (None, "") and sid not in (None, ""):
            return key, sid
    return None, None
