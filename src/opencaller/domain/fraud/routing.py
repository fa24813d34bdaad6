"""Routing that follows conversion: flash call or voice, per destination operator.

Each channel's calls and codes to an operator are counted (signals.channel_key). Until both
channels have ``min_sample`` calls the one with fewer calls is chosen (so both get measured);
after that the better converting one, except for an ``epsilon`` share of calls that go to a
channel drawn at random, so that the estimate of the other stays fresh. The generator is
seeded from the settings when given, so tests and benchmarks choose the same way each run."""

from __future__ import annotations

import random
from collections.abc import Mapping

CHANNELS = ("flash", "voice")


class Router:
    def __init__(self, *, min_sample: int, epsilon: float, seed: int | None) -> None:
        self.min_sample = min_sample
        self.epsilon = epsilon
        self.rng = random.Random(seed)

    def choose(self, counts: Mapping[str, tuple[int, int]]) -> str:
        """A channel of ``counts`` (channel -> (calls, codes))."""
        channels = list(counts)
        if len(channels) == 1:
            return channels[0]
        fewest = min(channels, key=lambda ch: counts[ch][0])
        if counts[fewest][0] < self.min_sample:
            return fewest
        if self.rng.random() < self.epsilon:
            return self.rng.choice(channels)
        return max(channels, key=lambda ch: conversion(counts[ch]))


def conversion(counts: tuple[int, int]) -> float:
    calls, codes = counts
    return codes / calls if calls else 0.0
