"""High-risk destination ranges: premium-rate and IRSF-known prefixes, shipped as data.

The list is a text file (one E.164 prefix a line, ``#`` comments) so that an operator can
read it and replace it (``fraud.high_risk_ranges_path``) without touching code."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

SHIPPED = "high_risk.txt"


class HighRiskRanges:
    def __init__(self, prefixes: dict[str, str]) -> None:
        self.prefixes = prefixes  # prefix -> its comment
        self._lengths = sorted({len(p) for p in prefixes}, reverse=True)

    def match(self, phone: str) -> str | None:
        """The longest listed prefix ``phone`` starts with, if any."""
        for n in self._lengths:
            if phone[:n] in self.prefixes:
                return phone[:n]
        return None

    def describe(self, prefix: str) -> str:
        return self.prefixes.get(prefix, "")


def parse(text: str) -> HighRiskRanges:
    found: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        body, _, comment = line.partition("#")
        prefix = body.strip()
        if not prefix:
            continue
        if not prefix.isdigit() or not prefix.isascii():
            raise ValueError(f"line {number}: {prefix!r} is not a prefix of ASCII digits")
        found[prefix] = comment.strip()
    return HighRiskRanges(found)


def load(path: str | None) -> HighRiskRanges:
    """The operator's list at ``path``, or the one shipped in the package."""
    if path:
        return parse(Path(path).read_text(encoding="utf-8"))
    shipped = resources.files(__package__).joinpath("data", SHIPPED)
    return parse(shipped.read_text(encoding="utf-8"))
