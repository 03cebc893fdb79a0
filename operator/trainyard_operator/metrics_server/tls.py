"""The secure metrics endpoint's TLS: a mounted certificate, re-read when it changes, or a
self-signed one made at start-up (as controller-runtime does when given none).

A self-signed certificate proves nothing about the server, so scrapers skip verification
(the chart's ServiceMonitor sets insecureSkipVerify unless it is given a certificate Secret);
it still keeps the bearer token and the metrics off the wire in clear text. Its key exists
only in memory and, for the instant `ssl` needs a file to load it, in a private temporary
directory removed right after.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import logging
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CERT_FILE = "tls.crt"
KEY_FILE = "tls.key"
#: A restarted operator makes a new one; a year outlives any pod that is ever upgraded.
SELF_SIGNED_VALIDITY = dt.timedelta(days=365)


def server_context() -> ssl.SSLContext:
    """A server-side context: TLS 1.2 or newer, HTTP/1.1 only."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    return context


@dataclass
class CertificateFiles:
    """tls.crt and tls.key in a directory (a mounted kubernetes.io/tls Secret).

    `reload_if_changed` loads them into the live context again when either file's content
    changed: a renewed Secret (cert-manager renews before expiry) then serves new handshakes
    without a restart. Contents, not timestamps, are compared: two writes within one
    timestamp tick would look unchanged, and the files are a few KiB.
    """

    directory: Path

    def __post_init__(self) -> None:
        self._stamp: bytes | None = None
        self._error = ""  # a bad pair is reported once, not at every check

    @property
    def cert(self) -> Path:
        return self.directory / CERT_FILE

    @property
    def key(self) -> Path:
        return self.directory / KEY_FILE

    def _read(self) -> tuple[bytes, bytes, bytes]:
        cert, key = self.cert.read_bytes(), self.key.read_bytes()
        return cert, key, hashlib.sha256(cert + b"\0" + key).digest()

    def load(self, context: ssl.SSLContext) -> None:
        """Load the pair; raises OSError or ssl.SSLError when missing or not a pair."""
        cert, key, stamp = self._read()
        _load_pair(context, cert, key)
        self._stamp = stamp

    def reload_if_changed(self, context: ssl.SSLContext) -> bool:
        """Reload a changed pair; on a bad or half-written one keep serving the old pair."""
        try:
            cert, key, stamp = self._read()
            if stamp == self._stamp:
                return False
            _load_pair(context, cert, key)
        except (OSError, ssl.SSLError) as err:
            if str(err) != self._error:
                log.warning("metrics TLS: keeping the current certificate: %s", err)
            self._error = str(err)
            return False
        self._stamp, self._error = stamp, ""
        log.info("metrics TLS: loaded the renewed certificate from %s", self.directory)
        return True


def load_self_signed(context: ssl.SSLContext, hosts: list[str]) -> None:
    """Make a self-signed certificate for `hosts` (names or IP addresses) and load it."""
    # cryptography is imported here only: nothing else in the operator needs it
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys(hosts):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "trainyard-operator-metrics")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate a client's clock skew
        .not_valid_after(now + SELF_SIGNED_VALIDITY)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _load_pair(context, certificate.public_bytes(serialization.Encoding.PEM), key_pem)


def _load_pair(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """Load a PEM pair held in memory into `context`, all or nothing.

    `ssl` loads only from files, so the pair goes to a private temporary directory for the
    moment it takes (mkdtemp makes it 0700), from the bytes read once: what is checked is
    what is loaded. It is tried on a scratch context first, because OpenSSL replaces the
    certificate before it finds that the key does not match, which would leave the live
    context without a usable key.
    """
    with tempfile.TemporaryDirectory(prefix="trainyard-metrics-tls-") as scratch:
        cert_path, key_path = Path(scratch, CERT_FILE), Path(scratch, KEY_FILE)
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        server_context().load_cert_chain(cert_path, key_path)
        context.load_cert_chain(cert_path, key_path)


def default_hosts(bind_address: str) -> list[str]:
    """Names a self-signed certificate carries: loopback, this host, the bound address."""
    hosts = ["localhost", "127.0.0.1", "::1", socket.gethostname()]
    if bind_address not in ("", "0.0.0.0", "::"):
        hosts.append(bind_address)
    return hosts
