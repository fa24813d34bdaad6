"""Place and country names in Russian for phone numbers, as libphonenumber's geocoder gives them.

``phonenumbers.geocoder`` imports ``phonenumbers.geodata``: every prefix in every language,
about 100 MB in each process that describes a number. Here a child process
(:mod:`opencaller.numbering.places_build`) extracts the Russian names (English where the data
has no Russian one, as the geocoder falls back) once per phonenumbers version into a 5 MB SQLite
file in a cache directory; serving processes read that file, with SQLite's own small page cache.

The answers are those of ``geocoder.description_for_number(number, "ru")`` and
``geocoder.country_name_for_number(number, "ru")``: the rules around the table (number types,
Argentina's mobile token, shared country codes) are repeated from the geocoder, using only
libphonenumber's metadata. When the file cannot be built the geocoder itself is loaded, with a
warning, so answers never change.

Cache directory, first that is set: :func:`configure` (the ``cache_dir`` setting),
``OPENCALLER_CACHE_DIR``, ``CACHE_DIRECTORY`` (systemd's ``CacheDirectory=``),
``$XDG_CACHE_HOME/opencaller``, ``~/.cache/opencaller``; if that one is not writable, a private
``opencaller-<uid>`` directory in the system temporary directory.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, PhoneNumberType

import opencaller.numbering.places_build as places_build

log = logging.getLogger(__name__)

LANG = places_build.LANG
BUILD_TIMEOUT_S = 300.0  # the build takes about 2 s; generous for a loaded machine


class Names(Protocol):
    def country_name_for_number(self, number: PhoneNumber) -> str: ...

    def description_for_number(
        self, number: PhoneNumber, *, kind: int | None = None, country: str | None = None
    ) -> str: ...


class PlaceTable:
    """Reads a table written by :mod:`places_build`; raises ``ValueError`` or
    ``sqlite3.Error`` when the file is not a complete table for this phonenumbers version."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # immutable: the file is never changed once renamed into place (a new version gets a
        # new name), so SQLite may skip locking and change detection.
        uri = path.resolve().as_uri() + "?mode=ro&immutable=1"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()  # one connection, shared by the threads of a process
        self._broken: GeocoderNames | None = None  # set if the file fails after opening
        try:
            meta = dict(self._conn.execute("SELECT key, value FROM meta").fetchall())
            expected = {
                "format": str(places_build.FORMAT),
                "lang": LANG,
                "phonenumbers": phonenumbers.__version__,
            }
            if any(meta.get(k) != v for k, v in expected.items()):
                raise ValueError(f"{path}: built for {meta}, need {expected}")
            longest = int(meta["longest_prefix"])
            self.countries: dict[str, str] = dict(
                self._conn.execute("SELECT region, name FROM country").fetchall()
            )
            # The one lookup: every prefix of the number at once; a longer prefix is a larger
            # integer, so the first row in descending order is the longest match.
            marks = ",".join("?" * longest)
            self._query = (
                "SELECT name.text FROM place JOIN name ON name.id = place.name_id"
                f" WHERE place.prefix IN ({marks}) ORDER BY place.prefix DESC LIMIT 1"
            )
            self._longest = longest
            self.place("74951234567")  # reaches the place and name tables: fail here, not later
        except BaseException:
            self._conn.close()
            raise

    def place(self, digits: str) -> str:
        """Name of the longest prefix of ``digits`` (E.164 without +) in the table, or ""."""
        if not digits:
            return ""
        # Lengths past the number's end repeat the whole number, as the geocoder's slices do.
        prefixes = [int(digits[:n]) for n in range(1, self._longest + 1)]
        with self._lock:
            row = self._conn.execute(self._query, prefixes).fetchone()
        return str(row[0]) if row else ""

    def country(self, region: str) -> str:
        return self.countries.get(region, "")

    def close(self) -> None:
        self._conn.close()

    # --- the geocoder's rules around its data (phonenumbers/geocoder.py) ---

    def country_name_for_number(self, number: PhoneNumber) -> str:
        """The country when the country code has one, or the number is valid in exactly one of
        the countries sharing the code (+1, +7, +44 ...); else ""."""
        regions = phonenumbers.region_codes_for_country_code(number.country_code or 0)
        if len(regions) == 1:
            return self.country(regions[0])
        found = "ZZ"  # "unknown region": has no name
        for region in regions:
            if phonenumbers.is_valid_number_for_region(number, region):
                if found != "ZZ":
                    return ""
                found = region
        return self.country(found)

    def description_for_number(
        self, number: PhoneNumber, *, kind: int | None = None, country: str | None = None
    ) -> str:
        """The place of a geographic number (fixed line, and mobiles where the plan ties them to
        a place), falling back to the country; "" for an invalid number. ``kind`` (its
        PhoneNumberType) and ``country`` (``country_name_for_number``) save computing them again
        when the caller has them."""
        if self._broken is None:
            try:
                return self._description(number, kind, country)
            except sqlite3.Error:
                # The file was checked when opened; if it fails later (changed on disk), keep
                # answering the same names rather than failing requests.
                log.exception("place names table %s failed; using the geocoder", self.path)
                self._broken = GeocoderNames()
        return self._broken.description_for_number(number)

    def _description(self, number: PhoneNumber, kind: int | None, country: str | None) -> str:
        if kind is None:
            kind = phonenumbers.number_type(number)
        if kind == PhoneNumberType.UNKNOWN:
            return ""
        code = number.country_code or 0  # always set on a parsed number
        if not phonenumbers.is_number_type_geographical(kind, code):
            return self.country_name_for_number(number) if country is None else country
        located = number
        national = phonenumbers.national_significant_number(number)
        token = phonenumbers.country_mobile_token(code)
        if token and national.startswith(token):
            # Argentina: mobiles carry a 9 before the area code; the data is keyed without it.
            region = phonenumbers.region_code_for_country_code(code)
            with contextlib.suppress(NumberParseException):
                located = phonenumbers.parse(national[len(token) :], region)
        e164 = phonenumbers.format_number(located, PhoneNumberFormat.E164)
        place = self.place(e164[1:])
        if place:
            return place
        return self.country_name_for_number(number) if country is None else country


class GeocoderNames:
    """The fallback: libphonenumber's geocoder in this process (about 100 MB)."""

    def __init__(self) -> None:
        import phonenumbers.geocoder

        self._geocoder = phonenumbers.geocoder

    def country_name_for_number(self, number: PhoneNumber) -> str:
        return str(self._geocoder.country_name_for_number(number, LANG))

    def description_for_number(
        self, number: PhoneNumber, *, kind: int | None = None, country: str | None = None
    ) -> str:
        return str(self._geocoder.description_for_number(number, LANG))


# --- where the table lives ---

_configured_dir: Path | None = None
_names: Names | None = None
_names_lock = threading.Lock()


def configure(cache_dir: str | os.PathLike[str] | None) -> None:
    """Directory for the table (the ``cache_dir`` setting); ``None``: the default search.

    Takes effect for a table not loaded yet; one already loaded keeps serving (its content
    does not depend on where it is).
    """
    global _configured_dir
    _configured_dir = Path(cache_dir).expanduser() if cache_dir else None


def table_name() -> str:
    version = re.sub(r"[^0-9A-Za-z._-]", "_", phonenumbers.__version__)
    return f"places-{LANG}-f{places_build.FORMAT}-phonenumbers-{version}.sqlite3"


def cache_dirs() -> list[Path]:
    """Where the table is looked for and built, in order (see the module docstring)."""
    first: Path | None = _configured_dir
    # Platform conventions (systemd, XDG) besides Settings.cache_dir's own variable, read
    # here too for processes that never load the settings (the builder child, library use).
    for variable, sub in (
        ("OPENCALLER_CACHE_DIR", ""),
        ("CACHE_DIRECTORY", ""),
        ("XDG_CACHE_HOME", "opencaller"),
    ):
        value = os.environ.get(variable, "").split(os.pathsep)[0]
        if first is None and value and os.path.isabs(value):
            first = Path(value) / sub if sub else Path(value)
    if first is None:
        with contextlib.suppress(RuntimeError):  # no home directory
            first = Path.home() / ".cache" / "opencaller"
    uid = os.getuid() if hasattr(os, "getuid") else os.getpid()
    private_tmp = Path(tempfile.gettempdir()) / f"opencaller-{uid}"
    return [d for d in (first, private_tmp) if d is not None]


def names() -> Names:
    """The process-wide names: the table, built first if needed, else the geocoder."""
    global _names
    if _names is None:
        with _names_lock:
            if _names is None:
                _names = _load()
    return _names


def warm() -> None:
    """Find or build the table now (startup) rather than on the first number described."""
    names()


def _reset() -> None:
    """Forget the loaded names (tests)."""
    global _names
    with _names_lock:
        if isinstance(_names, PlaceTable):
            _names.close()
        _names = None


class BuildError(Exception):
    """The builder failed (or wrote something unreadable): retrying elsewhere would not help."""


def _load() -> Names:
    dirs = cache_dirs()
    for directory in dirs:
        table = _open(directory / table_name())
        if table is not None:
            return table
    problems: list[str] = []
    for directory in dirs:
        try:
            return open_or_build(directory)
        except BuildError as exc:
            problems.append(f"{directory}: {exc}")
            break
        except OSError as exc:  # not writable (read-only home, ...): try the next one
            problems.append(f"{directory}: {exc}")
    log.warning(
        "place names table unavailable (%s); loading libphonenumber's geocoder in this "
        "process instead, about 100 MB more",
        "; ".join(problems) or "no cache directory",
    )
    return GeocoderNames()


def open_or_build(directory: Path) -> PlaceTable:
    """The table in ``directory``, built there first when missing or unreadable.

    Raises ``OSError`` when the directory cannot be used, :class:`BuildError` when the build
    fails.
    """
    _prepare(directory)
    path = directory / table_name()
    with _build_lock(directory):
        # Another process may have built it while we waited for the lock.
        table = _open(path)
        if table is not None:
            return table
        started = time.monotonic()
        _run_builder(path)
        try:
            table = PlaceTable(path)
        except (ValueError, KeyError, sqlite3.Error) as exc:
            raise BuildError(f"built table unreadable: {exc}") from exc
        log.info("built place names table %s in %.1f s", path, time.monotonic() - started)
        return table


def _open(path: Path) -> PlaceTable | None:
    if not path.is_file():
        return None
    try:
        return PlaceTable(path)
    except (ValueError, KeyError, sqlite3.Error) as exc:
        log.info("place names table %s unusable, rebuilding: %s", path, exc)
        return None


def _prepare(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if directory.parent == Path(tempfile.gettempdir()) and hasattr(os, "getuid"):
        # A shared temporary directory: use ours only, so nobody else can plant a table.
        st = directory.stat()
        if st.st_uid != os.getuid() or st.st_mode & 0o022:
            raise PermissionError(f"{directory} is not a private directory of this user")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionError(f"{directory} is not writable")


@contextlib.contextmanager
def _build_lock(directory: Path) -> Iterator[None]:
    """Processes starting together build once: the others wait here, then open the file.

    Without ``fcntl`` (Windows) they may all build; the renames keep that harmless.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    with (directory / ".places.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # the holder's build is bounded by BUILD_TIMEOUT_S
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _run_builder(path: Path) -> None:
    if not sys.executable:
        raise BuildError("no Python interpreter to run the builder with")
    # Run the builder as a script with -P (no script directory on sys.path): it needs only
    # phonenumbers, and skipping opencaller's imports keeps the child about 50 MB smaller.
    command = [sys.executable, "-P", places_build.__file__, str(path), phonenumbers.__version__]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BuildError(f"builder did not run: {exc}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise BuildError(
            f"builder exited with {done.returncode}: {lines[-1] if lines else 'no output'}"
        )
