"""Kubeconfig files for the local cluster: admin and components (client certificates) and
ServiceAccounts (bearer tokens).

Certificates are embedded (`*-data` fields) so that a kubeconfig keeps working when copied
elsewhere on the machine. `cluster.py` writes the admin and component files; the pytest
plugin writes ServiceAccount files from TokenRequest tokens.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _document(name: str, server: str, ca_cert: Path, user: dict[str, str]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": name,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca_cert)},
            }
        ],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": name,
        "preferences": {},
    }


def _write(path: Path, document: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    # written then renamed, so a reader never sees half a file while a cluster restarts
    tmp = path.with_suffix(".tmp")
    tmp.write_text(yaml.safe_dump(document, sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def write_cert_kubeconfig(
    path: Path, *, name: str, server: str, ca_cert: Path, client_cert: Path, client_key: Path
) -> Path:
    """A kubeconfig that authenticates with a client certificate."""
    user = {
        "client-certificate-data": _b64(client_cert),
        "client-key-data": _b64(client_key),
    }
    return _write(path, _document(name, server, ca_cert, user))


def write_token_kubeconfig(
    path: Path, *, name: str, server: str, ca_cert: Path, token: str, namespace: str = ""
) -> Path:
    """A kubeconfig that authenticates with a bearer token (e.g. a ServiceAccount's)."""
    document = _document(name, server, ca_cert, {"token": token})
    if namespace:
        document["contexts"][0]["context"]["namespace"] = namespace
    return _write(path, document)
