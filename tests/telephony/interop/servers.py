"""Real SIP software for the interop tests: a test CA, Kamailio as the operator's SBC, baresip
as the subscriber's phone. Every process is started on free 127.0.0.1 ports and killed by
its PID at teardown."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import wave
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = Path(__file__).resolve().parent
KAMAILIO = shutil.which("kamailio") or "/usr/sbin/kamailio"
BARESIP = shutil.which("baresip") or "/usr/bin/baresip"
DOMAIN = "opencaller.test"
SBC_NAME = "sbc.opencaller.test"  # the name on the SBC's certificate


def kamailio_modules() -> Path | None:
    for p in ("/usr/lib/x86_64-linux-gnu/kamailio/modules", "/usr/lib/kamailio/modules"):
        if Path(p, "tls.so").exists():
            return Path(p)
    return None


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as t:
            t.bind(("127.0.0.1", 0))
            port = int(t.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                try:
                    u.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no free port")


# --- certificates -------------------------------------------------------------------------


@dataclass
class Issued:
    cert: Path
    key: Path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(dest: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> Issued:
    dest.mkdir(parents=True, exist_ok=True)
    c, k = dest / "cert.pem", dest / "key.pem"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return Issued(c, k)


class CertAuthority:
    """A throwaway certificate authority."""

    def __init__(self, dest: Path, name: str = "opencaller test CA") -> None:
        self.dest = dest
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        self.files = _write(dest, self.cert, self.key)

    def issue(self, dest: Path, dns_name: str) -> Issued:
        """A server certificate for ``dns_name`` and 127.0.0.1."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(dns_name))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName(dns_name),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        return _write(dest, cert, key)


# --- processes ----------------------------------------------------------------------------


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        # Kamailio forks its workers into the process group it leads; end them all.
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _options_ok(port: int) -> bool:
    """Does a SIP server answer an OPTIONS on 127.0.0.1:port (UDP)?"""
    branch = "z9hG4bK" + os.urandom(6).hex()
    msg = (
        f"OPTIONS sip:{DOMAIN} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 127.0.0.1:9;branch={branch};rport\r\n"
        "Max-Forwards: 70\r\n"
        f"From: <sip:probe@{DOMAIN}>;tag=1\r\nTo: <sip:{DOMAIN}>\r\n"
        f"Call-ID: {branch}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
    ).encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.3)
        s.sendto(msg, ("127.0.0.1", port))
        try:
            data = s.recv(4096)
        except OSError:
            return False
    return data.startswith(b"SIP/2.0 200")


@dataclass
class Kamailio:
    """The operator's SBC: registrar + digest auth + record-routing on UDP, TCP and TLS."""

    workdir: Path
    users: dict[str, str]  # username -> password (the phone's and our trunk's)
    cert: Issued
    udp_port: int = 0
    tcp_port: int = 0
    tls_port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Kamailio:
        modules = kamailio_modules()
        assert modules is not None
        self.udp_port, self.tcp_port, self.tls_port = free_port(), free_port(), free_port()
        db = self.workdir / "db"
        db.mkdir(parents=True, exist_ok=True)
        (db / "version").write_text("table_name(str) table_version(int)\nsubscriber:7\n")
        rows = "".join(f"{u}:{DOMAIN}:{p}\n" for u, p in self.users.items())
        (db / "subscriber").write_text("username(str) domain(str) password(str)\n" + rows)
        tls_cfg = self.workdir / "tls.cfg"
        tls_cfg.write_text(
            "[server:default]\nmethod = TLSv1.2+\n"
            f"certificate = {self.cert.cert}\nprivate_key = {self.cert.key}\n"
            "verify_certificate = no\nrequire_certificate = no\n\n"
            "[client:default]\nmethod = TLSv1.2+\n"
            "verify_certificate = no\nrequire_certificate = no\n"
        )
        text = (HERE / "kamailio.tmpl.cfg").read_text()
        for k, v in {
            "DOMAIN": DOMAIN,
            "UDP_PORT": str(self.udp_port),
            "TCP_PORT": str(self.tcp_port),
            "TLS_PORT": str(self.tls_port),
            "MODULES": str(modules) + "/",
            "DB_DIR": str(db),
            "TLS_CFG": str(tls_cfg),
        }.items():
            text = text.replace(f"@{k}@", v)
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(text)
        run = self.workdir / "run"
        run.mkdir(exist_ok=True)
        self.log = (self.workdir / "kamailio.log").open("wb")
        self.proc = subprocess.Popen(
            [KAMAILIO, "-f", str(cfg), "-DD", "-E", "-Y", str(run), "-P", str(run / "pid")],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 15
        while not _options_ok(self.udp_port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("kamailio did not start:\n" + self.log_text()[-3000:])
            time.sleep(0.1)
        return self

    def log_text(self) -> str:
        return (self.workdir / "kamailio.log").read_text(errors="replace")

    def sip_trace(self) -> list[str]:
        """The SIP messages the phone sent and received (baresip's ``-s`` trace), in order."""
        return _TRACE.findall(self.log_text())

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            self.log.close()


# One traced message: "UDP a -> b" then the message, up to the colour reset of the trace.
_TRACE = re.compile(r"(?:UDP|TCP|TLS) \S+ -> \S+\n(.*?)\x1b\[;m", re.S)

BARESIP_CONFIG = """\
poll_method		epoll
sip_listen		127.0.0.1:{sip_port}
audio_player		aubridge,phone
audio_source		aufile,{mic}
audio_alert		aubridge,alert
module_path		/usr/lib/baresip/modules
module			g711.so
module			aubridge.so
module			aufile.so
module			sndfile.so
module			srtp.so
module_app		account.so
module_app		menu.so
module_app		ctrl_tcp.so
ctrl_tcp_listen		127.0.0.1:{ctrl_port}
snd_path		{rec_dir}
rtp_ports		{rtp_min}-{rtp_max}
audio_buffer		20-160
"""


@dataclass
class Baresip:
    """The subscriber's phone, registered at the SBC over UDP; headless (it plays to an
    in-process bridge, says a second of silence from a file, and ``sndfile`` records what it
    receives to WAV files)."""

    workdir: Path
    accounts: list[str]  # lines of baresip's accounts file
    mic_s: float = 60.0  # how long the phone "speaks"; then it hangs up (baresip's menu)
    proc: subprocess.Popen[bytes] | None = None
    rec_dir: Path = field(init=False)

    def start(self, registered: int) -> Baresip:
        conf = self.workdir / "baresip"
        conf.mkdir(parents=True, exist_ok=True)
        self.rec_dir = self.workdir / "rec"
        self.rec_dir.mkdir(exist_ok=True)
        mic = self.workdir / "mic.wav"  # silence; at its end the phone hangs up
        with wave.open(str(mic), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(8000)
            w.writeframes(b"\0\0" * int(8000 * self.mic_s))
        (conf / "accounts").write_text("\n".join(self.accounts) + "\n")
        (conf / "contacts").write_text("")
        for attempt in range(3):
            # baresip also binds TLS on its SIP port + 1; another process may hold it.
            rtp = free_port() // 2 * 2
            (conf / "config").write_text(
                BARESIP_CONFIG.format(
                    sip_port=free_port(),
                    ctrl_port=free_port(),
                    rec_dir=self.rec_dir,
                    rtp_min=rtp,
                    rtp_max=rtp + 40,
                    mic=mic,
                )
            )
            self.log = (self.workdir / "baresip.log").open("wb")
            self.proc = subprocess.Popen(
                [BARESIP, "-f", str(conf), "-v", "-s"],
                stdin=subprocess.DEVNULL,
                stdout=self.log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                self.wait_for(r"\{0/UDP/v4\} 200 OK", count=registered, what="registration")
                return self
            except AssertionError:
                self.stop()
                if attempt == 2 or "Address already in use" not in self.log_text():
                    raise
        raise AssertionError("unreachable")

    def log_text(self) -> str:
        return (self.workdir / "baresip.log").read_text(errors="replace")

    def wait_for(
        self, pattern: str, *, count: int = 1, within_s: float = 20.0, what: str = ""
    ) -> list[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + within_s
        while True:
            found = [ln for ln in self.log_text().splitlines() if rx.search(ln)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                raise AssertionError(
                    f"baresip: no {what or pattern!r} in time:\n" + self.log_text()[-3000:]
                )
            time.sleep(0.1)

    def sip_trace(self) -> list[str]:
        """The SIP messages the phone sent and received (baresip's ``-s`` trace), in order."""
        return _TRACE.findall(self.log_text())

    def stop(self) -> None:
        if self.proc is not None:
            _kill(self.proc)
            self.log.close()
