"""TLS contexts for SIP: a client context per trunk, a server context for our listener."""

from __future__ import annotations

import ssl

from opencaller.telephony.sip.config import SipConfig, TrunkConfig


def client_context(trunk: TrunkConfig) -> ssl.SSLContext:
    """Verify the trunk's certificate (chain and name) unless the operator turned it off."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=trunk.tls_ca_file)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if not trunk.tls_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if trunk.tls_cert_file is not None:
        ctx.load_cert_chain(trunk.tls_cert_file, trunk.tls_key_file)
    return ctx


def server_name(trunk: TrunkConfig) -> str:
    """The name the certificate must carry, and the SNI we send: the configured host, not
    an SRV target (RFC 5922 §4: the identity is the domain we were asked to reach)."""
    return trunk.tls_server_name or trunk.host


def server_context(config: SipConfig) -> ssl.SSLContext | None:
    if config.tls_cert_file is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config.tls_cert_file, config.tls_key_file)
    return ctx
