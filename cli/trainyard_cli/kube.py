"""The user's cluster connection, as kubectl would make it, and API errors turned into advice.

`connect` loads the kubeconfig the way kubectl does: `--kubeconfig`, else `$KUBECONFIG`
(several files joined with ':' are merged), else `~/.kube/config`, else — inside a pod —
the pod's ServiceAccount. `--context` picks a context; the namespace is `-n`, else the
context's, else `default`. Every failure becomes a `CliError` whose message says what to do
next; nothing here prints.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.config.config_exception import ConfigException

#: Seconds to connect and to wait for an answer of one (non-streaming) request.
REQUEST_TIMEOUT = (10.0, 60.0)
_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


class CliError(Exception):
    """A failure the user can act on; the message says what happened and what to do."""


@dataclass
class Target:
    """Where the commands act: an API client and the namespace(s)."""

    api: client.ApiClient
    namespace: str
    all_namespaces: bool = False
    server: str = ""
    context: str = ""


def _kubeconfig_files(kubeconfig: str | None) -> list[Path]:
    if kubeconfig:
        return [Path(kubeconfig).expanduser()]
    if os.environ.get("KUBECONFIG"):
        return [Path(p).expanduser() for p in os.environ["KUBECONFIG"].split(os.pathsep) if p]
    return [Path("~/.kube/config").expanduser()]


def connect(
    kubeconfig: str | None = None,
    context: str | None = None,
    namespace: str | None = None,
    *,
    all_namespaces: bool = False,
) -> Target:
    """A client for the user's cluster; CliError when there is none to be had."""
    files = _kubeconfig_files(kubeconfig)
    existing = [f for f in files if f.is_file()]
    if kubeconfig and not existing:
        raise CliError(f"--kubeconfig {kubeconfig}: no such file")
    configuration = client.Configuration()
    if not existing:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not context:
            return _in_cluster(configuration, namespace, all_namespaces)
        looked = " or ".join(str(f) for f in files)
        raise CliError(
            f"no kubeconfig found (looked for {looked}): pass --kubeconfig FILE or set "
            "KUBECONFIG to your cluster's kubeconfig (kind: `kind get kubeconfig`; the "
            "embedded cluster: `make cluster-up` prints its path)"
        )
    path = os.pathsep.join(str(f) for f in existing)
    contexts, current = _contexts(existing)
    names = [str(c.get("name")) for c in contexts]
    wanted = context or current
    chosen = next((c for c in contexts if c.get("name") == wanted), None)
    if context and chosen is None:
        raise CliError(
            f"--context {context}: no such context in {path} "
            f"(contexts: {', '.join(names) or 'none'}; `kubectl config get-contexts` lists them)"
        )
    if chosen is None:
        raise CliError(
            f"kubeconfig {path} has no current context: pass --context NAME "
            f"(contexts: {', '.join(names) or 'none'})"
        )
    try:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=path,
            context=str(chosen["name"]),
            client_configuration=configuration,
            persist_config=False,
        )
    except (ConfigException, OSError, ValueError) as err:
        raise CliError(f"kubeconfig {path}, context {chosen['name']}: {err}") from None
    _bounded(configuration)
    ns = namespace or (chosen.get("context") or {}).get("namespace") or "default"
    return Target(
        client.ApiClient(configuration),
        str(ns),
        all_namespaces,
        server=str(configuration.host),
        context=str(chosen["name"]),
    )


def _contexts(files: list[Path]) -> tuple[list[dict[str, Any]], str]:
    """The contexts of the kubeconfig files and the current one, merged as kubectl merges
    them (the first file to name a context or a current-context wins)."""
    contexts: dict[str, dict[str, Any]] = {}
    current = ""
    for path in files:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise CliError(f"kubeconfig {path} cannot be read: {err}") from None
        if not isinstance(data, dict):
            raise CliError(f"kubeconfig {path} is not a kubeconfig (a YAML mapping)")
        for entry in data.get("contexts") or []:
            if isinstance(entry, dict) and entry.get("name"):
                contexts.setdefault(str(entry["name"]), entry)
        current = current or str(data.get("current-context") or "")
    return list(contexts.values()), current


def _in_cluster(
    configuration: client.Configuration, namespace: str | None, all_namespaces: bool
) -> Target:
    """Inside a pod with no kubeconfig: its ServiceAccount, as kubectl does."""
    try:
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except ConfigException as err:
        raise CliError(f"no kubeconfig, and the in-cluster config failed: {err}") from None
    _bounded(configuration)
    ns = namespace
    if not ns:
        with contextlib.suppress(OSError):
            ns = _SA_NAMESPACE.read_text().strip()
    return Target(
        client.ApiClient(configuration),
        ns or "default",
        all_namespaces,
        server=str(configuration.host),
        context="in-cluster",
    )


def _bounded(configuration: client.Configuration) -> None:
    # One try: a CLI should say at once that the server is unreachable, not retry in silence.
    configuration.retries = 0


def api_message(err: ApiException) -> str:
    """The API server's own message from an error's Status body."""
    try:
        body = json.loads(err.body or b"{}")
    except (TypeError, ValueError):
        body = {}
    message = body.get("message") if isinstance(body, dict) else None
    return str(message or f"HTTP {err.status} {err.reason}")


def not_found_is_the_api(err: ApiException) -> bool:
    """A 404 about the TrainingJob API itself (no CRD), not about one named object."""
    try:
        body = json.loads(err.body or b"{}")
    except (TypeError, ValueError):
        return True
    details = body.get("details") if isinstance(body, dict) else None
    return not (isinstance(details, dict) and details.get("name"))


@contextlib.contextmanager
def advice(target: Target, doing: str) -> Iterator[None]:
    """Turn API and connection failures met while `doing` into CliErrors that say what to do.

    404s are left to the caller, which knows what was looked for.
    """
    try:
        yield
    except ApiException as err:
        if err.status == 404:
            raise
        raise explain(err, target, doing) from None
    except urllib3.exceptions.HTTPError as err:
        reason = getattr(err, "reason", None) or err
        raise CliError(
            f"cannot reach the API server at {target.server} ({reason}): is the cluster up, "
            f"and is the context ({target.context}) the one you meant? (--context, --kubeconfig)"
        ) from None


def explain(err: ApiException, target: Target, doing: str) -> CliError:
    message = api_message(err)
    if err.status == 401:
        return CliError(
            f"the API server did not accept your credentials while trying to {doing} "
            f"({message}): log in again or refresh the token in your kubeconfig "
            f"(context {target.context})"
        )
    if err.status == 403:
        return CliError(
            f"forbidden: {message}. Ask a cluster admin for a Role that allows it "
            "(docs/cli.md lists the rights each command needs), or use -n for a namespace "
            "where you have them"
        )
    if err.status == 422:
        return CliError(f"the API server refused to {doing}: {message}")
    return CliError(f"could not {doing}: {message}")


def payload(response: Any) -> dict[str, Any]:
    """A `_preload_content=False` response's JSON body."""
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise CliError(f"unexpected answer from the API server: {data!r:.200}")
    return data
