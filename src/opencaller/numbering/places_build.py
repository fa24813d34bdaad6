"""Builds the place-name table of :mod:`opencaller.numbering.places`; run as a child process.

``python -P .../opencaller/numbering/places_build.py OUT PHONENUMBERS_VERSION`` (standalone: it
imports nothing from opencaller, so the child stays small).

Loading libphonenumber's geodata costs about 100 MB, so only this short-lived process ever
loads it: it keeps the names one language needs and writes them to an SQLite file, which
appears at ``OUT`` in one rename (readers see a complete file or none).
"""

from __future__ import annotations

import os
import sqlite3
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

# The language of the names we answer with, and the one libphonenumber falls back to when a
# prefix has no name in it (phonenumbers.prefix._find_lang; only zh, ja and ko do not).
LANG = "ru"
FALLBACK_LANG = "en"
# Bumped when the file layout or the rules below change, so old files are not read.
FORMAT = 1

SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE name (id INTEGER PRIMARY KEY, text TEXT NOT NULL);
-- prefix: the leading digits of the E.164 number (country code included) as an integer;
-- E.164 never starts with 0, so digits and integer map one to one.
CREATE TABLE place (prefix INTEGER PRIMARY KEY, name_id INTEGER NOT NULL);
CREATE TABLE country (region TEXT PRIMARY KEY, name TEXT NOT NULL);
"""


def place_names(
    data: Mapping[str, Mapping[str, str]], lang: str = LANG
) -> Iterator[tuple[str, str]]:
    """(prefix, name) for every prefix that answers in ``lang``.

    The same choice as libphonenumber's lookup: the name in ``lang``, else the English one;
    a prefix with neither is skipped, as the library skips it and tries a shorter one.
    """
    for prefix, names in data.items():
        if any(key.startswith(lang + "_") for key in names):
            # A regional variant (ru_XX) would be chosen by the library for some numbers;
            # the table keeps one name per prefix, so refuse rather than answer differently.
            raise ValueError(f"prefix {prefix} has a regional variant of {lang!r}")
        if lang in names:
            yield prefix, names[lang]
        elif FALLBACK_LANG in names:
            yield prefix, names[FALLBACK_LANG]


def country_names(
    locale: Mapping[str, Mapping[str, str]], lang: str = LANG
) -> Iterator[tuple[str, str]]:
    """(region code, country name) as geocoder._region_display_name picks them: ``*xx`` means
    "the name held under language xx"."""
    for region, names in locale.items():
        name = names.get(lang, "")
        if name.startswith("*"):
            name = names.get(name[1:], "")
        yield region, name


def write_table(
    out: Path,
    version: str,
    places: Iterator[tuple[str, str]],
    countries: Iterator[tuple[str, str]],
) -> int:
    """Writes the table to a temporary file next to ``out``, then renames it to ``out``.

    Returns the number of prefixes.
    """
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        rows = _write(tmp, version, places, countries)
        # Make the content durable before the rename publishes it.
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return rows


def _write(
    path: Path,
    version: str,
    places: Iterator[tuple[str, str]],
    countries: Iterator[tuple[str, str]],
) -> int:
    ids: dict[str, int] = {}
    rows: list[tuple[int, int]] = []
    longest = 0
    for prefix, text in places:
        if not prefix.isdigit() or prefix.startswith("0"):
            raise ValueError(f"unexpected prefix {prefix!r}")
        rows.append((int(prefix), ids.setdefault(text, len(ids))))
        longest = max(longest, len(prefix))
    if not rows:
        raise ValueError("no place names")
    rows.sort()  # rowid order: a compact B-tree
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode = OFF")  # a scratch file: nothing to roll back to
        conn.execute("PRAGMA synchronous = OFF")
        conn.executescript(SCHEMA)
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO name (id, text) VALUES (?, ?)", ((i, t) for t, i in ids.items())
        )
        conn.executemany("INSERT INTO place (prefix, name_id) VALUES (?, ?)", rows)
        conn.executemany("INSERT INTO country (region, name) VALUES (?, ?)", countries)
        meta = {
            "format": str(FORMAT),
            "lang": LANG,
            "phonenumbers": version,
            "longest_prefix": str(longest),
            "prefixes": str(len(rows)),
        }
        conn.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", meta.items())
        conn.execute("COMMIT")
    finally:
        conn.close()
    return len(rows)


def build(out: Path, expected_version: str) -> int:
    import phonenumbers

    if phonenumbers.__version__ != expected_version:
        # Another interpreter or site-packages than the parent's: its names could differ.
        raise SystemExit(
            f"phonenumbers {phonenumbers.__version__} here, {expected_version} in the parent"
        )
    from phonenumbers.geodata import GEOCODE_DATA
    from phonenumbers.geodata.locale import LOCALE_DATA

    return write_table(out, expected_version, place_names(GEOCODE_DATA), country_names(LOCALE_DATA))


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: places_build.py OUT PHONENUMBERS_VERSION", file=sys.stderr)
        return 2
    rows = build(Path(argv[0]), argv[1])
    print(f"{rows} prefixes written to {argv[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
