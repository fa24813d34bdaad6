"""Spoken verification codes: espeak-ng speech, resampled to 8 kHz, G.711 encoded.

Each phrase piece ("your code is", one digit) is synthesised once and kept as 8 kHz 16-bit
linear PCM in memory and, optionally, on disk. A prompt is only concatenation plus
encoding, so it is cheap and deterministic: the same code and language give the same bytes.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import struct
import subprocess
import threading
from pathlib import Path
from typing import Final, Literal

import numpy as np
import numpy.typing as npt
import soxr

ESPEAK: Final = "espeak-ng"  # the default binary; Settings.espeak (OPENCALLER_ESPEAK) overrides
RATE: Final = 8000
FRAME: Final = 160  # samples per 20 ms RTP packet at 8 kHz

Law = Literal["ulaw", "alaw"]
Pcm = npt.NDArray[np.int16]

# What each language says. Digits are spoken one by one, with pauses, so they are clear.
PHRASES: Final[dict[str, dict[str, str]]] = {
    "ru": {
        "intro": "Ваш код",
        **dict(
            zip(
                "0123456789",
                [
                    "ноль",
                    "один",
                    "два",
                    "три",
                    "четыре",
                    "пять",
                    "шесть",
                    "семь",
                    "восемь",
                    "девять",
                ],
                strict=True,
            )
        ),
    },
    "en": {
        "intro": "Your code is",
        **dict(
            zip(
                "0123456789",
                ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"],
                strict=True,
            )
        ),
    },
}
VOICES: Final = {"ru": "ru", "en": "en"}
SPEED_WPM: Final = 130

# Pauses, in milliseconds.
PAUSE_AFTER_INTRO: Final = 300
PAUSE_BETWEEN_DIGITS: Final = 250
PAUSE_BETWEEN_REPEATS: Final = 900
LEAD_IN: Final = 200


# --- G.711 ----------------------------------------------------------------------------------
# The classic segment algorithm (as in the ITU reference and CPython's old audioop), done on
# whole arrays. Bit-exact with audioop.lin2ulaw / lin2alaw for 16-bit input.

_ULAW_SEG_END = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF], dtype=np.int32)
_ALAW_SEG_END = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF], dtype=np.int32)


def lin2ulaw(samples: npt.NDArray[np.int16]) -> bytes:
    pcm = samples.astype(np.int32) >> 2  # 14-bit, arithmetic shift like the C code
    mask = np.where(pcm < 0, 0x7F, 0xFF).astype(np.int32)
    pcm = np.minimum(np.abs(pcm), 8159) + (0x84 >> 2)
    seg = np.searchsorted(_ULAW_SEG_END, pcm, side="left").astype(np.int32)
    body = (seg << 4) | ((pcm >> (np.minimum(seg, 7) + 1)) & 0xF)
    out = np.where(seg >= 8, 0x7F, body) ^ mask
    return out.astype(np.uint8).tobytes()


def lin2alaw(samples: npt.NDArray[np.int16]) -> bytes:
    pcm = samples.astype(np.int32) >> 3  # 13-bit
    negative = pcm < 0
    mask = np.where(negative, 0x55, 0xD5).astype(np.int32)
    pcm = np.where(negative, -pcm - 1, pcm)
    seg = np.searchsorted(_ALAW_SEG_END, pcm, side="left").astype(np.int32)
    shift = np.where(seg < 2, 1, np.minimum(seg, 7))
    body = (seg << 4) | ((pcm >> shift) & 0xF)
    out = np.where(seg >= 8, 0x7F, body) ^ mask
    return out.astype(np.uint8).tobytes()


def encode(samples: Pcm, law: Law) -> bytes:
    return lin2ulaw(samples) if law == "ulaw" else lin2alaw(samples)


# --- synthesis ------------------------------------------------------------------------------


def _wav_to_pcm(wav: bytes) -> tuple[Pcm, int]:
    """Parse espeak-ng's WAV. With --stdout its sizes are 0xFFFFFFFF, so read to the end."""
    if wav[:4] != b"RIFF" or wav[8:12] != b"WAVE":
        raise RuntimeError("espeak-ng did not produce a WAV file")
    pos, rate, bits = 12, 0, 0
    while pos + 8 <= len(wav):
        cid, size = wav[pos : pos + 4], struct.unpack("<I", wav[pos + 4 : pos + 8])[0]
        if cid == b"fmt ":
            channels, rate = struct.unpack("<HI", wav[pos + 10 : pos + 16])
            bits = struct.unpack("<H", wav[pos + 22 : pos + 24])[0]
            if channels != 1 or bits != 16:
                raise RuntimeError("espeak-ng WAV is not 16-bit mono")
        elif cid == b"data":
            data = wav[pos + 8 :] if size == 0xFFFFFFFF else wav[pos + 8 : pos + 8 + size]
            n = len(data) // 2 * 2
            return np.frombuffer(data[:n], dtype="<i2").astype(np.int16), rate
        pos += 8 + size + (size & 1)
    raise RuntimeError("espeak-ng WAV has no data chunk")


def _resample(pcm: Pcm, rate: int) -> Pcm:
    x = pcm.astype(np.float32) / 32768.0
    y = soxr.resample(x, rate, RATE, quality="HQ")
    return np.clip(np.round(np.asarray(y) * 32768.0), -32768, 32767).astype(np.int16)


def _espeak_args(language: str, text: str, espeak: str = ESPEAK) -> list[str]:
    return [espeak, "-v", VOICES[language], "-s", str(SPEED_WPM), "--stdout", text]


def _trim(pcm: Pcm, threshold: int = 300, margin: int = RATE // 50) -> Pcm:
    """Cut espeak-ng's own leading and trailing silence; our pauses are explicit."""
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    if len(loud) == 0:
        return pcm
    start, end = max(0, int(loud[0]) - margin), min(len(pcm), int(loud[-1]) + 1 + margin)
    return pcm[start:end]


def _silence(ms: int) -> Pcm:
    return np.zeros(RATE * ms // 1000, dtype=np.int16)


class PromptCache:
    """Phrase pieces as 8 kHz PCM, in memory and (if ``directory`` is set) on disk."""

    def __init__(
        self, directory: str | os.PathLike[str] | None = None, *, espeak: str = ESPEAK
    ) -> None:
        self.directory = Path(directory) if directory else None
        self.espeak = espeak
        self._pieces: dict[tuple[str, str], Pcm] = {}
        self._lock = threading.Lock()

    def _path(self, language: str, key: str) -> Path | None:
        if self.directory is None:
            return None
        text = PHRASES[language][key]
        digest = hashlib.sha256(
            "|".join([*_espeak_args(language, text, self.espeak), str(RATE)]).encode()
        ).hexdigest()[:16]
        return self.directory / f"{language}-{key}-{digest}.s16"

    def _load(self, language: str, key: str) -> Pcm | None:
        got = self._pieces.get((language, key))
        if got is not None:
            return got
        path = self._path(language, key)
        if path is not None and path.exists():
            pcm = np.frombuffer(path.read_bytes(), dtype="<i2").astype(np.int16)
            self._pieces[(language, key)] = pcm
            return pcm
        return None

    def _store(self, language: str, key: str, wav: bytes) -> Pcm:
        pcm, rate = _wav_to_pcm(wav)
        pcm8 = _trim(_resample(pcm, rate))
        path = self._path(language, key)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pcm8.astype("<i2").tobytes())
            tmp.replace(path)
        with self._lock:
            self._pieces[(language, key)] = pcm8
        return pcm8

    def piece(self, language: str, key: str) -> Pcm:
        """Synchronous: may run espeak-ng. Use :meth:`warm` first inside an event loop."""
        got = self._load(language, key)
        if got is not None:
            return got
        res = subprocess.run(
            _espeak_args(language, PHRASES[language][key], self.espeak),
            capture_output=True,
            check=True,
        )
        return self._store(language, key, res.stdout)

    def ready(self, language: str) -> bool:
        """Whether every piece of ``language`` is in memory (no espeak-ng run needed)."""
        return all((language, key) in self._pieces for key in PHRASES.get(language, {}))

    async def warm(self, language: str, timeout_s: float | None = None) -> None:
        """Synthesise every missing piece of ``language`` without blocking the loop.

        Raises TimeoutError when that takes longer than ``timeout_s``; an espeak-ng still
        running then (or when the caller is cancelled) is killed and reaped.
        """
        check_language(language)
        async with asyncio.timeout(timeout_s):
            for key in PHRASES[language]:
                if self._load(language, key) is not None:
                    continue
                out = await self._synthesise(language, key)
                await asyncio.to_thread(self._store, language, key, out)

    async def _synthesise(self, language: str, key: str) -> bytes:
        proc = await asyncio.create_subprocess_exec(
            *_espeak_args(language, PHRASES[language][key], self.espeak),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await proc.communicate()
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        if proc.returncode != 0:
            raise RuntimeError(f"espeak-ng failed: {err.decode(errors='replace')}")
        return out

    def pcm(self, code: str, language: str, repeats: int = 2) -> Pcm:
        check_language(language)
        if not code.isdigit():
            raise ValueError("the code must be digits")
        once: list[Pcm] = [self.piece(language, "intro"), _silence(PAUSE_AFTER_INTRO)]
        for i, digit in enumerate(code):
            if i:
                once.append(_silence(PAUSE_BETWEEN_DIGITS))
            once.append(self.piece(language, digit))
        parts: list[Pcm] = [_silence(LEAD_IN)]
        for r in range(repeats):
            if r:
                parts.append(_silence(PAUSE_BETWEEN_REPEATS))
            parts.extend(once)
        pcm = np.concatenate(parts)
        pad = (-len(pcm)) % FRAME  # whole 20 ms packets, so what is sent is exactly this
        return np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])

    def prompt(self, code: str, language: str, *, law: Law = "ulaw", repeats: int = 2) -> bytes:
        return encode(self.pcm(code, language, repeats), law)


def check_language(language: str) -> None:
    if language not in PHRASES:
        raise ValueError(f"no voice prompts for language {language!r}; have {sorted(PHRASES)}")


# In memory; a SIP trunk's prompts can be kept on disk too (Settings.sip's prompt_cache_dir).
_default = PromptCache()


def default_cache() -> PromptCache:
    return _default


def build_prompt(code: str, language: str, *, law: Law = "ulaw", repeats: int = 2) -> bytes:
    """The whole spoken prompt (the code said ``repeats`` times) as G.711 bytes.

    A whole number of 160-byte (20 ms) frames; deterministic for a given espeak-ng and soxr.
    """
    return _default.prompt(code, language, law=law, repeats=repeats)
