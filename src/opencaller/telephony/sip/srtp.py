"""SRTP with SDES keys (RFC 4568, RFC 3711) for trunks that require encrypted media.

We only ever send media (the voice prompt), so only the outbound direction is protected: our
key goes in the offer's ``a=crypto`` line, the far end decrypts with it. The key the far end
puts in its answer would protect what it sends us, which we read and drop. The encryption is
libsrtp's (through ``pylibsrtp``, the binding aiortc uses); the suite is the one every SBC
and phone supports, AES_CM_128_HMAC_SHA1_80.

SDES puts the key in the SDP, so it is only as secret as the signalling: use it with
``transport = "tls"``.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

import pylibsrtp

SUITE = "AES_CM_128_HMAC_SHA1_80"
KEY_BYTES = 30  # 16 bytes of master key + 14 of master salt
_CRYPTO = re.compile(r"^(\d+)\s+(\S+)\s+inline:([A-Za-z0-9+/=]+)")


@dataclass(frozen=True, slots=True)
class SdesKey:
    key: bytes
    tag: int = 1

    @classmethod
    def new(cls) -> SdesKey:
        return cls(os.urandom(KEY_BYTES))

    @property
    def attribute(self) -> str:
        """The value of our ``a=crypto:`` line."""
        return f"{self.tag} {SUITE} inline:{base64.b64encode(self.key).decode()}"

    def accepted_by(self, answer_crypto: list[str]) -> bool:
        """Did the answer take our offer (the same tag and suite, with a key of its own)?"""
        for value in answer_crypto:
            m = _CRYPTO.match(value.strip())
            if m and int(m.group(1)) == self.tag and m.group(2).upper() == SUITE:
                return True
        return False

    def protector(self) -> Callable[[bytes], bytes]:
        """Encrypt and authenticate outgoing RTP packets with our key."""
        policy = pylibsrtp.Policy(
            key=self.key,
            ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND,
            srtp_profile=pylibsrtp.Policy.SRTP_PROFILE_AES128_CM_SHA1_80,
        )
        session = pylibsrtp.Session(policy)
        return session.protect
