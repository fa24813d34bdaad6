"""Tables of the web dashboard: a small key-value store shared by every node.

It holds the session-signing secret when ``settings.secret`` is empty, so that every node of
an installation signs and accepts the same cookies.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, String, Table, Text

from .tables import metadata

dashboard_kv = Table(
    "dashboard_kv",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("created_at", Float, nullable=False),
)
