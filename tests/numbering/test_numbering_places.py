"""Place names without libphonenumber's geodata in the process: same answers as its geocoder.

These tests load ``phonenumbers.geocoder`` in the test process to compare with it; the serving
code must not (checked in a fresh process).
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import phonenumbers
import pytest
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType

from opencaller.numbering import places
from opencaller.numbering.places_build import country_names, place_names

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("places-cache")


@pytest.fixture(scope="module")
def table(cache_dir: Path) -> Iterator[places.PlaceTable]:
    """Built here by the child process, as a serving process would on a new machine."""
    t = places.open_or_build(cache_dir)
    yield t
    t.close()


@pytest.fixture
def fresh_names(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Process-wide names loaded from scratch by the test, and forgotten after it."""
    places._reset()
    monkeypatch.setattr(places, "_configured_dir", None)
    yield
    places._reset()


def _random_digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _parse(digits: str) -> PhoneNumber | None:
    try:
        return phonenumbers.parse("+" + digits)
    except NumberParseException:
        return None


def _sample_numbers() -> list[PhoneNumber]:
    rng = random.Random(20240611)
    return [*_under_random_prefixes(rng), *_near_examples(rng), *_every_example()]


def _under_random_prefixes(rng: random.Random) -> Iterator[PhoneNumber]:
    """Under random prefixes of the data (every country it covers, every prefix length): a
    valid number when one of the usual lengths gives one, else the invalid attempt."""
    from phonenumbers.geodata import GEOCODE_DATA

    for prefix in rng.sample(sorted(GEOCODE_DATA), 2500):
        last = None
        for total in (11, 10, 12, 9, 13, 8):
            if total <= len(prefix):
                continue
            last = _parse(prefix + _random_digits(rng, total - len(prefix))) or last
            if last is not None and phonenumbers.is_valid_number(last):
                break
        if last is not None:
            yield last


def _near_examples(rng: random.Random) -> Iterator[PhoneNumber]:
    """Russian mobiles and fixed lines, Kazakhstan (shares +7), and other countries: random
    digits after the leading digits of the library's example numbers."""
    for _ in range(600):
        head = "79" if rng.random() < 0.5 else "7" + rng.choice("3489")
        n = _parse(head + _random_digits(rng, 11 - len(head)))
        if n is not None:
            yield n
    regions = ["KZ", "US", "CA", "DE", "GB", "AR", "MX", "BY", "UA", "FR", "IT", "BR", "CN"]
    for region in regions:
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            assert example is not None
            digits = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)[1:]
            for _ in range(80):
                keep = rng.randint(len(str(example.country_code)) + 1, len(digits) - 2)
                n = _parse(digits[:keep] + _random_digits(rng, len(digits) - keep))
                if n is not None:
                    yield n


def _every_example() -> Iterator[PhoneNumber]:
    """Every region's example of every type: shared country codes, non-geographic types."""
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in range(12):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is not None:
                yield example
    for code in sorted(phonenumbers.COUNTRY_CODES_FOR_NON_GEO_REGIONS):
        example = phonenumbers.example_number_for_non_geo_entity(code)
        if example is not None:
            yield example


def test_same_answers_as_the_geocoder(table: places.PlaceTable) -> None:
    from phonenumbers import geocoder

    numbers = _sample_numbers()
    assert len(numbers) > 5000
    regions = {phonenumbers.region_code_for_number(n) for n in numbers}
    assert len(regions) > 200
    differences = []
    named_places = 0
    for n in numbers:
        expected = (
            geocoder.country_name_for_number(n, "ru"),
            geocoder.description_for_number(n, "ru"),
        )
        got = (table.country_name_for_number(n), table.description_for_number(n))
        if got != expected:
            differences.append((phonenumbers.format_number(n, 0), expected, got))
        named_places += bool(got[1]) and got[1] != got[0]
    assert differences[:10] == []
    assert named_places > 3000  # the comparison reached the place table, not only countries


def test_argentine_mobile_token_and_russian_places(table: places.PlaceTable) -> None:
    from phonenumbers import geocoder

    for text, place in [
        ("+74951234567", "Московская обл."),
        ("+74991234567", "г. Москва"),
        ("+78123456789", "г. Санкт-Петербург"),
        ("+77272123456", "Алматы"),
        ("+12025550123", "Washington D.C."),  # no Russian name: English, as the geocoder
    ]:
        assert table.description_for_number(phonenumbers.parse(text)) == place
    # Argentina: a mobile's 9 is dropped before the prefix lookup
    mobile = phonenumbers.parse("+5491123456789")
    assert table.description_for_number(mobile) == geocoder.description_for_number(mobile, "ru")
    assert table.description_for_number(mobile) not in ("", "Аргентина")
    assert table.country_name_for_number(phonenumbers.parse("+79091000000")) == "Россия"
    assert table.country_name_for_number(phonenumbers.parse("+77011234567")) == "Казахстан"


def test_a_serving_process_does_not_load_geodata(cache_dir: Path, table: places.PlaceTable) -> None:
    script = textwrap.dedent(
        """
        import json, resource, sys
        import opencaller.server  # what uvicorn imports in every API process
        from opencaller.numbering import describe

        moscow = describe("+74951234567")
        answers = [describe(p).region for p in ("+74991234567", "+77272123456", "+4930123456")]
        print(json.dumps({
            "geodata": sorted(m for m in sys.modules if m.startswith("phonenumbers.geo")),
            "moscow": [moscow.country, moscow.region],
            "others": answers,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        }))
        """
    )
    env = dict(os.environ, OPENCALLER_CACHE_DIR=str(cache_dir))
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    import json

    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["geodata"] == []
    assert out["moscow"] == ["Россия", "Московская обл."]
    assert out["others"] == ["г. Москва", "Алматы", "Berlin"]


def test_processes_starting_together_build_once(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import logging, sys
        logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
        from opencaller.numbering import places
        names = places.names()
        print(type(names).__name__, names.path)
        """
    )
    env = dict(os.environ, OPENCALLER_CACHE_DIR=str(tmp_path))
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen([sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    table = tmp_path / places.table_name()
    assert all(out.strip().endswith(f"PlaceTable {table}") for out in outputs), outputs
    assert sum(out.count("built place names table") for out in outputs) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".places.lock", table.name]


def test_unreadable_table_is_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / places.table_name()
    path.write_bytes(b"not a database" * 100)
    assert places._open(path) is None
    table = places.open_or_build(tmp_path)
    try:
        assert table.place("74991234567") == "г. Москва"
    finally:
        table.close()


def test_failed_build_falls_back_to_the_geocoder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    fresh_names: None,
) -> None:
    # The child refuses: it sees another phonenumbers version than the parent claims.
    monkeypatch.setattr(phonenumbers, "__version__", "0.0.0-test")
    monkeypatch.setenv("OPENCALLER_CACHE_DIR", str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="opencaller.numbering.places"):
        names = places.names()
    assert isinstance(names, places.GeocoderNames)
    assert "loading libphonenumber's geocoder" in caplog.text
    assert "builder exited with 1" in caplog.text
    number = phonenumbers.parse("+74991234567")
    assert names.description_for_number(number) == "г. Москва"
    assert names.country_name_for_number(number) == "Россия"
    assert not (tmp_path / places.table_name()).exists()


def test_unusable_cache_dir_falls_back_to_a_private_temp_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    table: places.PlaceTable,
    fresh_names: None,
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(places.tempfile, "gettempdir", lambda: str(temp))
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the directory should be: mkdir fails
    monkeypatch.setenv("OPENCALLER_CACHE_DIR", str(blocked / "cache"))
    private = places.cache_dirs()[1]
    assert private.parent == temp
    private.mkdir()
    private.chmod(0o777)  # others could plant a table here: refused
    with pytest.raises(PermissionError, match="private"):
        places._prepare(private)
    private.chmod(0o700)
    built: list[Path] = []

    def copy_instead_of_building(path: Path) -> None:  # the real build is tested above
        built.append(path)
        shutil.copy(table.path, path)

    monkeypatch.setattr(places, "_run_builder", copy_instead_of_building)
    names = places.names()
    assert isinstance(names, places.PlaceTable)
    assert built == [private / places.table_name()] == [names.path]


def test_cache_dir_order(monkeypatch: pytest.MonkeyPatch) -> None:
    for variable in ("OPENCALLER_CACHE_DIR", "CACHE_DIRECTORY", "XDG_CACHE_HOME"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", "/home/someone")
    assert places.cache_dirs()[0] == Path("/home/someone/.cache/opencaller")
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert places.cache_dirs()[0] == Path("/home/someone/.cache/opencaller")
    monkeypatch.setenv("XDG_CACHE_HOME", "/xdg")
    assert places.cache_dirs()[0] == Path("/xdg/opencaller")
    monkeypatch.setenv("CACHE_DIRECTORY", "/var/cache/opencaller:/var/cache/other")
    assert places.cache_dirs()[0] == Path("/var/cache/opencaller")
    monkeypatch.setenv("OPENCALLER_CACHE_DIR", "/srv/cache")
    assert places.cache_dirs()[0] == Path("/srv/cache")
    places.configure("/etc/../configured")
    try:
        assert places.cache_dirs()[0] == Path("/etc/../configured")
    finally:
        places.configure(None)
    assert places.cache_dirs()[-1].name.startswith("opencaller-")


def test_builder_keeps_the_geocoders_choice_of_language() -> None:
    data = {
        "7495": {"en": "Moscow", "ru": "Московская обл."},
        "1201": {"en": "New Jersey", "de": "New Jersey (DE)"},
        "3312": {"fr": "Paris"},  # neither: the geocoder tries a shorter prefix
        "3460": {"en": "", "ru": ""},  # an empty name stops the search, as in the geocoder
    }
    assert list(place_names(data)) == [
        ("7495", "Московская обл."),
        ("1201", "New Jersey"),
        ("3460", ""),
    ]
    with pytest.raises(ValueError, match="regional variant"):
        list(place_names({"7": {"ru": "Россия", "ru_KZ": "Ресей"}}))
    locale = {"RU": {"ru": "Россия"}, "BY": {"be": "Беларусь", "ru": "*be"}, "XX": {"en": "X"}}
    assert dict(country_names(locale)) == {"RU": "Россия", "BY": "Беларусь", "XX": ""}
