"""Lookups per second through the library call, with a registry of realistic size loaded.

    PYTHONPATH=src python bench/lookup.py [--postgres postgresql://postgres@127.0.0.1:5432/test]
        [--seconds 2] [--ranges-per-code 1000]

Writes a synthetic registry (DEF 900-999 and ABC 3xx/4xx/8xx codes split into ranges, about
the size of the published files) to a temporary directory, imports it into a fresh SQLite file
and, when --postgres is given, into a new database next to that URL (dropped afterwards),
then measures:

- parse:      parse_phone() alone
- offline:    describe() — libphonenumber only, no database
- uncached:   PhoneDirectory.lookup() of distinct numbers (registry + MNP queries each time)
- uncached×16: the same with 16 lookups in flight (pool of 16 connections)
- cached:     PhoneDirectory.lookup() of numbers already in the LRU cache
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from opencaller.numbering import PhoneDirectory, describe, parse_phone
from opencaller.storage.db import async_url, create_engine, migrate_async

HEADER = "АВС/ DEF;От;До;Емкость;Оператор;Регион;Территория ГАР;ИНН"
OPERATORS = [
    ('ПАО "Вымпел-Коммуникации"', "7713076301"),
    ('ПАО "Мобильные ТелеСистемы"', "7740000076"),
    ('ПАО "МегаФон"', "7812014560"),
    ('ООО "Т2 Мобайл"', "7743895280"),
]


def write_registry(directory: Path, per_code: int) -> tuple[list[Path], int]:
    step = 10_000_000 // per_code
    files: list[Path] = []
    total = 0
    groups = {
        "DEF-9xx.csv": range(900, 1000),
        "ABC-3xx.csv": range(301, 400, 3),
        "ABC-4xx.csv": range(401, 500, 3),
        "ABC-8xx.csv": range(811, 900, 3),
    }
    for name, codes in groups.items():
        lines = [HEADER]
        for code in codes:
            for i in range(per_code):
                operator, inn = OPERATORS[(code + i) % len(OPERATORS)]
                low = i * step
                lines.append(
                    f"{code};{low:07d};{low + step - 1:07d};{step};{operator};"
                    f"Пермский край;г.о. город Пермь|Пермский край;{inn}"
                )
                total += 1
        path = directory / name
        path.write_text("\ufeff" + "\n".join(lines) + "\n", encoding="utf-8")
        files.append(path)
    mnp = directory / "mnp.csv"
    rng = random.Random(7)
    ported = {f"9{rng.randrange(10**9):09d}" for _ in range(20_000)}
    mnp.write_text(
        "number;operator;mnc\n" + "".join(f'{n};ПАО "МегаФон";02\n' for n in ported),
        encoding="utf-8",
    )
    files.append(mnp)
    return files, total


def numbers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [f"+79{rng.randrange(10**9):09d}" for _ in range(count)]


def rate_sync(seconds: float, call: Callable[[str], object], phones: list[str]) -> float:
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for phone in phones[:1000]:
            call(phone)
        done += min(len(phones), 1000)
    return done / (time.perf_counter() - start)


async def rate_async(
    seconds: float, call: Callable[[str], Awaitable[object]], phones: list[str], inflight: int
) -> float:
    done, start, index = 0, time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        batch = [phones[(index + k) % len(phones)] for k in range(inflight)]
        index += inflight
        if inflight == 1:
            await call(batch[0])
        else:
            await asyncio.gather(*(call(p) for p in batch))
        done += inflight
    return done / (time.perf_counter() - start)


async def measure(engine: AsyncEngine, files: list[Path], seconds: float) -> dict[str, float]:
    directory = PhoneDirectory(engine, cache_size=1_000_000)
    start = time.perf_counter()
    await directory.import_registry(files[:-1])
    await directory.import_mnp(files[-1])
    results = {"import (s)": time.perf_counter() - start}
    uncached = PhoneDirectory(engine, cache_size=1)  # every lookup goes to the database
    results["uncached"] = await rate_async(seconds, uncached.lookup, numbers(200_000, 1), 1)
    results["uncached×16"] = await rate_async(seconds, uncached.lookup, numbers(200_000, 2), 16)
    hot = numbers(1000, 3)
    for phone in hot:
        await directory.lookup(phone)
    results["cached"] = await rate_async(seconds, directory.lookup, hot, 1)
    return results


async def on_sqlite(files: list[Path], seconds: float, tmp: Path) -> dict[str, float]:
    url = f"sqlite:///{tmp / 'bench.db'}"
    await migrate_async(url)
    engine = create_engine(url, pool_size=16)
    try:
        return await measure(engine, files, seconds)
    finally:
        await engine.dispose()


async def on_postgres(base: str, files: list[Path], seconds: float) -> dict[str, float]:
    name = f"opencaller_bench_{uuid.uuid4().hex[:8]}"
    admin = create_async_engine(async_url(base), isolation_level="AUTOCOMMIT")
    async with admin.connect() as conn:
        await conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        await migrate_async(url)
        engine = create_engine(url, pool_size=16)
        try:
            return await measure(engine, files, seconds)
        finally:
            await engine.dispose()
    finally:
        async with admin.connect() as conn:
            await conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        await admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres", help="PostgreSQL URL next to which a database is made")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--ranges-per-code", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files, total = write_registry(tmp, args.ranges_per_code)
        phones = numbers(10_000, 4)
        parse_rate = rate_sync(args.seconds, parse_phone, phones)
        offline_rate = rate_sync(args.seconds, describe, phones)
        columns = {"sqlite": asyncio.run(on_sqlite(files, args.seconds, tmp))}
        if args.postgres:
            columns["postgresql"] = asyncio.run(on_postgres(args.postgres, files, args.seconds))
    print(f"registry: {total} ranges, 20000 ported numbers; python {sys.version.split()[0]}")
    print(f"{'measure':<14}" + "".join(f"{name:>14}" for name in columns))
    print(f"{'parse':<14}" + f"{parse_rate:>14,.0f}" * len(columns))
    print(f"{'offline':<14}" + f"{offline_rate:>14,.0f}" * len(columns))
    for key in ("uncached", "uncached×16", "cached", "import (s)"):
        fmt = "{:>14,.1f}" if key.startswith("import") else "{:>14,.0f}"
        print(f"{key:<14}" + "".join(fmt.format(col[key]) for col in columns.values()))
    print("lookups per second unless noted; reproduce with:")
    print("  PYTHONPATH=src python bench/lookup.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
