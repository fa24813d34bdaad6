"""Reading arguments the way every known uCaller client sends them.

Query string, JSON body (also on GET), and form bodies are merged (body wins over query).
Values arrive as strings or JSON scalars; the helpers here coerce them leniently.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.requests import Request

from ..domain.phones import as_id
from ..errors import Code, UcallerError

_TRUE = {"true", "1", "on", "yes", "y"}
_FALSE = {"false", "0", "off", "no", "n", ""}
# C0 controls (NUL included: PostgreSQL cannot store it), DEL, C1 controls, and lone
# surrogates (not encodable): never part of a client name, key or URL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


@dataclass(slots=True)
class Args:
    values: dict[str, Any]
    header_credentials: tuple[str, str] | None  # (key, service_id) from Authorization
    body_credentials: tuple[Any, Any]  # from the body, may be (None, None)
    query_credentials: tuple[Any, Any]

    def get(self, name: str) -> Any:
        return self.values.get(name)

    def text(self, name: str, *, max_len: int | None = None) -> str | None:
        v = self.values.get(name)
        if v is None:
            return None
        if isinstance(v, (dict, list)):
            raise UcallerError(Code.BAD_PARAMETER, f"Parameter '{name}' must be a string")
        s = v if isinstance(v, str) else _scalar_text(v)
        if max_len is not None and len(s) > max_len:
            raise UcallerError(
                Code.BAD_PARAMETER, f"Parameter '{name}' is longer than {max_len} characters"
            )
        if _CONTROL.search(s):
            raise UcallerError(
                Code.BAD_PARAMETER, f"Parameter '{name}' must not contain control characters"
            )
        return s

    def flag(self, name: str) -> bool:
        v = self.values.get(name)
        if v is None:
            return False
        if isinstance(v, bool):
            return v
        if isinstance(v, (int, float)):
            return v != 0
        s = str(v).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise UcallerError(Code.BAD_PARAMETER, f"Parameter '{name}' must be a boolean")

    def integer(self, *names: str) -> int | None:
        """The first present of ``names`` as a positive integer (``uid``/``ucaller_id``)."""
        for name in names:
            v = self.values.get(name)
            if v is None or v == "":
                continue
            if isinstance(v, float) and v.is_integer() and 0 <= v < 1e18:
                v = int(v)
            found = as_id(v)
            if found is not None:
                return found
            raise UcallerError(Code.BAD_PARAMETER, f"Parameter '{name}' must be a positive integer")
        return None


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _bearer(request: Request) -> tuple[str, str] | None:
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or "." not in token:
        return None
    # The key never contains a dot; the service id is the part after the last one.
    key, _, service_id = token.strip().rpartition(".")
    return key, service_id


async def read_args(request: Request, *, max_fields: int) -> Args:
    """``max_fields`` bounds the arguments of each encoding (query, form, multipart, JSON);
    the body's size and time are bounded before this (wire/limits.py)."""
    # From the raw scope: building request.url costs more than the whole parse.
    raw_query = request.scope.get("query_string", b"").decode("utf-8", "replace")
    query: dict[str, Any] = _urlencoded(raw_query, max_fields)
    body: dict[str, Any] = {}
    raw = await request.body()
    if raw.strip():
        ctype = request.headers.get("content-type", "").lower()
        if "application/x-www-form-urlencoded" in ctype:
            body = _urlencoded(raw.decode("utf-8", "replace"), max_fields)
        elif "multipart/form-data" in ctype:
            body = await _multipart(request, raw, max_fields)
        else:
            # JSON is the documented body format; some clients send it without a
            # Content-Type or with a misspelled header, and on GET.
            try:
                parsed = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                if "json" in ctype or raw.lstrip()[:1] in (b"{", b"["):
                    raise UcallerError(
                        Code.BAD_REQUEST, "The request body is not valid JSON"
                    ) from exc
                parsed = _urlencoded(raw.decode("utf-8", "replace"), max_fields)
            if not isinstance(parsed, dict):
                raise UcallerError(Code.BAD_REQUEST, "The request body must be a JSON object")
            if len(parsed) > max_fields:
                raise _too_many(max_fields)
            body = parsed
    values = {**query, **body}
    return Args(
        values=values,
        header_credentials=_bearer(request),
        body_credentials=(body.get("key"), body.get("service_id")),
        query_credentials=(query.get("key"), query.get("service_id")),
    )


def _too_many(max_fields: int) -> UcallerError:
    return UcallerError(Code.BAD_REQUEST, f"More than {max_fields} parameters in the request")


def _urlencoded(text: str, max_fields: int) -> dict[str, Any]:
    if not text:
        return {}
    try:
        return dict(parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields))
    except ValueError as exc:  # the only ValueError parse_qsl raises here is max_num_fields
        raise _too_many(max_fields) from exc


async def _multipart(request: Request, raw: bytes, max_fields: int) -> dict[str, Any]:
    """The text fields of a multipart body (files are ignored, at most ``max_fields`` parts)."""

    async def chunks() -> AsyncGenerator[bytes, None]:
        yield raw

    parser = MultiPartParser(request.headers, chunks(), max_files=max_fields, max_fields=max_fields)
    try:
        form = await parser.parse()
    except MultiPartException as exc:  # no boundary, too many parts, malformed
        raise UcallerError(Code.BAD_REQUEST, f"Invalid multipart body: {exc.message}") from exc
    try:
        return {k: v for k, v in form.items() if isinstance(v, str)}
    finally:
        await form.close()
