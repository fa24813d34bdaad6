"""CSRF protection: one random token per session, required on every POST.

Forms carry it in a hidden ``csrf`` field; scripted requests may send ``X-CSRF-Token``.
SameSite=Lax cookies already stop most cross-site posts; the token covers the rest.
"""

from __future__ import annotations

import hmac

from starlette.datastructures import FormData
from starlette.requests import Request

from .session import Session

FIELD = "csrf"
HEADER = "x-csrf-token"


def token(session: Session) -> str:
    return str(session["csrf"])


def valid(session: Session, request: Request, form: FormData) -> bool:
    sent = form.get(FIELD) or request.headers.get(HEADER) or ""
    expected = session.get("csrf")
    if not isinstance(sent, str) or not sent or not isinstance(expected, str):
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())
