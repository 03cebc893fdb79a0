"""The local cluster's certificates and keys, made with `cryptography` (no openssl needed).

One self-signed CA signs: the serving certificate every component presents on 127.0.0.1,
the admin client certificate (O=system:masters, which bypasses RBAC: tests that check
permissions must use a ServiceAccount token instead), and one client certificate per
control-plane component under its well-known user name so the bootstrap RBAC roles apply,
plus the client certificate kube-apiserver presents to the node agent's kubelet-style log
endpoint (which accepts no other).
A separate key pair signs ServiceAccount tokens. `cluster.py` calls `ensure_pki` once per
state directory; existing files are reused so a restarted cluster keeps its identity.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: The first address of the service CIDR: the `kubernetes` Service's ClusterIP, which in-cluster
#: clients would dial (nothing does here, but the serving certificate must name it).
SERVICE_CIDR = "10.96.0.0/16"
KUBERNETES_SERVICE_IP = "10.96.0.1"

#: Client identities: file stem -> (common name, organization or None).
CLIENTS: dict[str, tuple[str, str | None]] = {
    "admin": ("trainyard-admin", "system:masters"),
    "controller-manager": ("system:kube-controller-manager", None),
    "scheduler": ("system:kube-scheduler", None),
    # what kube-apiserver presents to the node agent's log endpoint (`kubectl logs`)
    "kubelet-client": ("kube-apiserver-kubelet-client", None),
}

_VALIDITY = dt.timedelta(days=365)


@dataclass(frozen=True)
class Pki:
    """Paths of the files in `<state>/pki/`."""

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca.key"

    @property
    def serving_cert(self) -> Path:
        return self.root / "serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.root / "serving.key"

    @property
    def sa_key(self) -> Path:
        return self.root / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.root / "sa.pub"

    def client_cert(self, who: str) -> Path:
        return self.root / f"{who}.crt"

    def client_key(self, who: str) -> Path:
        return self.root / f"{who}.key"


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: generated in microseconds (RSA takes ~100 ms each) and accepted by every
    # component, both for TLS and for ServiceAccount token signing (ES256).
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str, organization: str | None = None) -> x509.Name:
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if organization:
        attributes.insert(0, x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization))
    return x509.Name(attributes)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        # a little slack backwards so that a clock step never makes a fresh cert "not yet valid"
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + _VALIDITY)
    )


def _load_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    key = serialization.load_pem_private_key(pki.ca_key.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{pki.ca_key}: expected an EC private key")
    return cert, key


def _make_ca(pki: Pki, cluster_name: str) -> None:
    key = _new_key()
    name = _name(f"trainyard-local-ca-{cluster_name}")
    cert = (
        _builder(name, name, key.public_key())
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
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_key(pki.ca_key, key)
    pki.ca_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _issue(
    pki: Pki,
    *,
    cert_path: Path,
    key_path: Path,
    subject: x509.Name,
    usage: x509.ObjectIdentifier,
    sans: list[x509.GeneralName] | None = None,
) -> None:
    ca_cert, ca_key = _load_ca(pki)
    key = _new_key()
    builder = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    _write_key(key_path, key)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def ensure_pki(root: Path, cluster_name: str) -> Pki:
    """Create whatever is missing under `root` and return the paths; existing files are kept."""
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o700)
    pki = Pki(root)
    if not (pki.ca_cert.exists() and pki.ca_key.exists()):
        _make_ca(pki, cluster_name)
    if not (pki.serving_cert.exists() and pki.serving_key.exists()):
        sans: list[x509.GeneralName] = [
            x509.DNSName(dns)
            for dns in (
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            )
        ]
        sans += [
            x509.IPAddress(ipaddress.ip_address(ip)) for ip in ("127.0.0.1", KUBERNETES_SERVICE_IP)
        ]
        _issue(
            pki,
            cert_path=pki.serving_cert,
            key_path=pki.serving_key,
            subject=_name("trainyard-local-serving"),
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            sans=sans,
        )
    for who, (common_name, organization) in CLIENTS.items():
        if not (pki.client_cert(who).exists() and pki.client_key(who).exists()):
            _issue(
                pki,
                cert_path=pki.client_cert(who),
                key_path=pki.client_key(who),
                subject=_name(common_name, organization),
                usage=ExtendedKeyUsageOID.CLIENT_AUTH,
            )
    if not (pki.sa_key.exists() and pki.sa_pub.exists()):
        key = _new_key()
        _write_key(pki.sa_key, key)
        pki.sa_pub.write_bytes(
            key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
    return pki
