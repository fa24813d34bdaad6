"""Tables of the numbering directory: the Russian numbering plan and ported numbers.

Kept apart from ``tables.py`` (same ``metadata``) so the directory can be imported and
replaced without touching the core schema.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Float, Index, Integer, String, Table, Text

from opencaller.storage.tables import Id, metadata

# One row per range of the ministry's registry (ABC-3xx/4xx/8xx, DEF-9xx files).
# range_from/range_to are full 10-digit national numbers (code * 10**7 + suffix), so a
# lookup is one backward index scan: range_from <= n ORDER BY range_from DESC LIMIT 1.
numbering_ranges = Table(
    "numbering_ranges",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("category", String(8), nullable=False),  # ABC-3xx | ABC-4xx | ABC-8xx | DEF-9xx
    Column("code", Integer, nullable=False),  # the 3-digit ABC or DEF code
    Column("range_from", BigInteger, nullable=False),
    Column("range_to", BigInteger, nullable=False),
    Column("capacity", BigInteger, nullable=False),
    Column("operator", String(512), nullable=False),
    Column("inn", String(12), nullable=False, default=""),
    Column("region", String(256), nullable=False, default=""),  # subject of the federation
    Column("city", String(256), nullable=False, default=""),  # settlement, when the file names one
    Column("region_raw", Text, nullable=False, default=""),  # "Регион" column as published
    Column("territory", Text, nullable=False, default=""),  # "Территория ГАР" column
    Column("source", String(256), nullable=False, default=""),  # file name it came from
    Index("ix_numbering_ranges_from", "range_from"),
    Index("ix_numbering_ranges_category", "category"),
)

# Numbers moved to another operator (MNP). number is the full E.164 number as an integer.
ported_numbers = Table(
    "ported_numbers",
    metadata,
    Column("number", BigInteger, primary_key=True, autoincrement=False),
    Column("operator", String(512), nullable=False),
    Column("mnc", Integer, nullable=True),
    Column("source", String(256), nullable=False, default=""),
)

# History of imports; max(id) is the directory version that lets every process drop its
# cache after an import made elsewhere (e.g. by the CLI).
numbering_imports = Table(
    "numbering_imports",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("kind", String(16), nullable=False),  # registry | mnp
    Column("files", Text, nullable=False, default=""),
    Column("rows", BigInteger, nullable=False, default=0),
    Column("created_at", Float, nullable=False),
)
