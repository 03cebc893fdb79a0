"""The secure metrics endpoint without a cluster: which answer for which review result
(`metrics_server.decisions`, pure), how long answers are reused, the `Gate` that strings
them together, the settings, and the TLS certificates it serves (self-signed, or a mounted
pair re-read when renewed). The reviews themselves, against a real API server, are
tests/integration/test_operator_metrics_auth.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pydantic import ValidationError

from trainyard_operator.metrics_server import Gate, ReviewError
from trainyard_operator.metrics_server.decisions import (
    ALLOWED_TTL_SECONDS,
    REFUSED_TTL_SECONDS,
    User,
    Verdict,
    VerdictCache,
    access_allowed,
    access_review,
    authenticated_user,
    bearer_token,
    token_key,
    verdict,
)
from trainyard_operator.metrics_server.tls import CertificateFiles, load_self_signed
from trainyard_operator.settings import OperatorSettings

# --- certificates for the tests (also used by the integration test) ------------------------


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(
    subject: str,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
) -> x509.Certificate:
    """A CA certificate (no issuer) or a serving certificate for 127.0.0.1 signed by one."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer[0].subject if issuer else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if issuer is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer[1] if issuer else key, hashes.SHA256())


def issue_serving_pair(
    directory: Path, ca_name: str, *, write: tuple[str, ...] = ("tls.key", "tls.crt")
) -> x509.Certificate:
    """Write tls.crt/tls.key for 127.0.0.1, signed by a new CA, into `directory` (only the
    files named in `write`, in that order); returns the CA."""
    ca_key = _key()
    ca = _certificate(ca_name, ca_key)
    key = _key()
    pem = serialization.Encoding.PEM
    contents = {
        "tls.key": key.private_bytes(
            pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
        "tls.crt": _certificate("trainyard-operator-metrics", key, (ca, ca_key)).public_bytes(pem),
    }
    for name in write:
        (directory / name).write_bytes(contents[name])
    return ca


def trusting(ca: x509.Certificate) -> ssl.SSLContext:
    """A client context that trusts `ca` only."""
    return ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> x509.Certificate:
    """A TLS handshake in memory; returns the certificate the server presented."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_end = client.wrap_bio(to_client, to_server, server_hostname="127.0.0.1")
    server_end = server.wrap_bio(to_server, to_client, server_side=True)
    done = {"client": False, "server": False}
    for _ in range(10):
        for side, end in (("client", client_end), ("server", server_end)):
            if not done[side]:
                try:
                    end.do_handshake()
                    done[side] = True
                except ssl.SSLWantReadError:
                    pass
        if all(done.values()):
            der = client_end.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der)
    raise AssertionError("the handshake did not finish")


def _server_context() -> ssl.SSLContext:
    return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)


# --- decisions --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc.def", "abc.def"),
        ("bearer abc", "abc"),
        ("  Bearer   abc  ", "abc"),
        (None, None),
        ("", None),
        ("Bearer", None),
        ("Bearer ", None),
        ("Basic dXNlcjpwYXNz", None),
        ("Bearer a b", None),
        ("Token abc", None),
    ],
)
def test_bearer_token_is_read_from_the_authorization_header(
    header: str | None, token: str | None
) -> None:
    assert bearer_token(header) == token


def test_the_cache_key_is_a_hash_not_the_token() -> None:
    key = token_key("secret-token")
    assert "secret-token" not in key
    assert len(key) == 64 and key == token_key("secret-token") != token_key("other")


def test_only_an_authenticated_review_with_a_user_names_one() -> None:
    assert authenticated_user({}) is None
    assert authenticated_user({"authenticated": False, "error": "invalid bearer token"}) is None
    assert authenticated_user({"authenticated": True, "user": {}}) is None
    user = authenticated_user(
        {
            "authenticated": True,
            "user": {
                "username": "system:serviceaccount:mon:prometheus",
                "uid": "u-1",
                "groups": ["system:serviceaccounts", "system:authenticated"],
                "extra": {"authentication.kubernetes.io/pod-name": ["prom-0"]},
            },
        }
    )
    assert user == User(
        "system:serviceaccount:mon:prometheus",
        "u-1",
        ("system:serviceaccounts", "system:authenticated"),
        {"authentication.kubernetes.io/pod-name": ("prom-0",)},
    )


def test_the_access_review_asks_for_get_on_the_metrics_url_as_the_reviewed_user() -> None:
    user = User("alice", "u-2", ("devs",), {"scopes": ("a", "b")})
    assert access_review(user) == {
        "apiVersion": "authorization.k8s.io/v1",
        "kind": "SubjectAccessReview",
        "spec": {
            "user": "alice",
            "uid": "u-2",
            "groups": ["devs"],
            "extra": {"scopes": ["a", "b"]},
            "nonResourceAttributes": {"path": "/metrics", "verb": "get"},
        },
    }
    assert "uid" not in access_review(User("bob"))["spec"]


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ({"allowed": True}, True),
        ({"allowed": True, "denied": True}, False),
        ({"allowed": False, "reason": "no RBAC policy matched"}, False),
        ({"allowed": False, "evaluationError": "webhook down"}, False),
        ({}, False),
    ],
)
def test_access_is_allowed_only_when_the_review_says_so(
    status: dict[str, Any], allowed: bool
) -> None:
    assert access_allowed(status) is allowed


def test_verdicts_are_401_403_and_200() -> None:
    assert verdict(None, False).status == 401
    assert verdict(None, True).status == 401  # no user, no access, whatever else was asked
    forbidden = verdict(User("carol"), False)
    assert forbidden.status == 403 and "carol" in forbidden.reason
    assert verdict(User("dave"), True) == Verdict(200, "OK")


def test_the_cache_keeps_answers_for_their_ttl_and_drops_the_oldest() -> None:
    cache = VerdictCache(size=2)
    ok, no = Verdict(200, "OK"), Verdict(403, "Forbidden")
    cache.put("a", ok, now=100.0)
    cache.put("b", no, now=100.0)
    assert cache.get("a", 100.0 + ALLOWED_TTL_SECONDS - 0.1) == ok
    assert cache.get("b", 100.0 + REFUSED_TTL_SECONDS - 0.1) == no
    assert cache.get("b", 100.0 + REFUSED_TTL_SECONDS) is None  # refusals expire sooner
    assert cache.get("a", 100.0 + ALLOWED_TTL_SECONDS) is None
    for i, key in enumerate("cde"):
        cache.put(key, ok, now=200.0 + i)
    assert len(cache) == 2
    assert cache.get("c", 203.0) is None and cache.get("e", 203.0) == ok


# --- the gate ----------------------------------------------------------------------------------


class _Reviews:
    """Answers reviews like an API server would, and counts them."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.broken = False

    def review_token(self, token: str) -> dict[str, Any]:
        self.calls.append("token")
        if self.broken:
            raise ReviewError("TokenReview: HTTP 403 Forbidden", 403)
        if token in ("reader-token", "outsider-token"):
            return {"authenticated": True, "user": {"username": token.removesuffix("-token")}}
        return {"authenticated": False}

    def review_access(self, user: User) -> dict[str, Any]:
        self.calls.append("access")
        return {"allowed": user.username == "reader"}


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_gate_reviews_a_token_once_per_ttl() -> None:
    reviews, clock = _Reviews(), _Clock()
    gate = Gate(reviews, clock=clock)

    async def scenario() -> None:
        assert (await gate.check(None)).status == 401
        assert reviews.calls == []  # no token, no API call
        assert (await gate.check("Bearer reader-token")).status == 200
        assert (await gate.check("Bearer reader-token")).status == 200
        assert reviews.calls == ["token", "access"]  # the second answer was cached
        assert (await gate.check("Bearer outsider-token")).status == 403
        assert (await gate.check("Bearer forged")).status == 401
        assert reviews.calls == ["token", "access", "token", "access", "token"]
        clock.now += ALLOWED_TTL_SECONDS
        assert (await gate.check("Bearer reader-token")).status == 200
        assert reviews.calls[-2:] == ["token", "access"]

    try:
        asyncio.run(scenario())
    finally:
        gate.close()


def test_concurrent_requests_with_one_token_share_its_review() -> None:
    reviews = _Reviews()
    gate = Gate(reviews, clock=_Clock())

    async def scenario() -> list[Verdict]:
        return await asyncio.gather(*(gate.check("Bearer reader-token") for _ in range(5)))

    try:
        assert [v.status for v in asyncio.run(scenario())] == [200] * 5
    finally:
        gate.close()
    assert reviews.calls == ["token", "access"]


def test_the_gate_fails_closed_and_uncached_when_a_review_fails() -> None:
    reviews, clock = _Reviews(), _Clock()
    reviews.broken = True
    gate = Gate(reviews, clock=clock)

    async def scenario() -> None:
        assert (await gate.check("Bearer reader-token")).status == 500
        reviews.broken = False
        assert (await gate.check("Bearer reader-token")).status == 200

    try:
        asyncio.run(scenario())
    finally:
        gate.close()


# --- settings ----------------------------------------------------------------------------------


def test_metrics_auth_is_off_unless_asked_and_a_cert_dir_needs_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("TRAINYARD_METRICS_AUTH", "TRAINYARD_METRICS_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    assert OperatorSettings().metrics_auth is False
    monkeypatch.setenv("TRAINYARD_METRICS_CERT_DIR", "/etc/trainyard/metrics-tls")
    with pytest.raises(ValidationError, match="TRAINYARD_METRICS_AUTH"):
        OperatorSettings()
    monkeypatch.setenv("TRAINYARD_METRICS_AUTH", "true")
    settings = OperatorSettings()
    assert settings.metrics_auth is True
    assert settings.metrics_cert_dir == "/etc/trainyard/metrics-tls"


# --- certificates ------------------------------------------------------------------------------


def test_a_self_signed_certificate_names_the_hosts_and_serves() -> None:
    server = _server_context()
    load_self_signed(server, ["localhost", "127.0.0.1", "operator-pod"])
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE  # self-signed: what a scraper with insecureSkipVerify does
    served = _handshake(server, client)
    names = served.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost", "operator-pod"]
    assert names.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    assert served.issuer == served.subject
    assert served.not_valid_after_utc > dt.datetime.now(dt.UTC) + dt.timedelta(days=300)


@pytest.mark.parametrize("written_first", ["tls.key", "tls.crt"])
def test_a_mounted_pair_is_reloaded_once_it_changed_and_matches(
    tmp_path: Path, written_first: str
) -> None:
    first = issue_serving_pair(tmp_path, "first-ca")
    server = _server_context()
    files = CertificateFiles(tmp_path)
    files.load(server)
    assert not files.reload_if_changed(server)
    assert _handshake(server, trusting(first)).issuer == first.subject

    issue_serving_pair(tmp_path, "half-ca", write=(written_first,))
    # half renewed: the files do not make a pair, so the old pair stays in use
    assert not files.reload_if_changed(server)
    assert _handshake(server, trusting(first)).issuer == first.subject

    second = issue_serving_pair(tmp_path, "second-ca")
    assert files.reload_if_changed(server)
    assert _handshake(server, trusting(second)).issuer == second.subject
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, trusting(first))


def test_a_missing_pair_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        CertificateFiles(tmp_path).load(_server_context())
