"""What a pod refers to by name, fetched from the API server for the process runner.

A kubelet resolves a pod's Secrets, ConfigMaps, downward-API fields and ServiceAccount
token before it starts the containers; `process_runner.py` asks this module for the same:
env values from `configMapKeyRef` / `secretKeyRef`, and the files of `secret`, `configMap`,
`downwardAPI` and `projected` volumes (the latter is how the ServiceAccount admission plugin
mounts `kube-api-access-*`: a TokenRequest token bound to the pod, `ca.crt` from the
`kube-root-ca.crt` ConfigMap, and the namespace). Files are written into the folder the
runner maps the volume to; programs find them through env values and args under the
mountPath, which the runner rewrites (a program that reads a fixed absolute path, such as
the in-cluster config of client libraries, does not find them: there is no mount namespace).

Called from `ProcessRunner.start` only (API calls are allowed there, not in `poll`).
Anything missing that the pod does not mark `optional` raises ConfigError naming it, which
the runner reports as CreateContainerConfigError, as a kubelet would.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

from trainyard_local.runners import PodHandle


class ConfigError(ValueError):
    """The pod asks for something a local process cannot give; the message names the field."""


def field_ref(pod: PodHandle, path: str, where: str) -> str:
    """The value of a downward-API fieldRef, or ConfigError naming `where`."""
    meta = pod.pod["metadata"]
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": pod.node_name,
        "spec.serviceAccountName": pod.pod["spec"].get("serviceAccountName", "default"),
        "status.podIP": pod.pod_ip,
        "status.podIPs": pod.pod_ip,
        "status.hostIP": pod.host_ip,
        "status.hostIPs": pod.host_ip,
    }
    if path in simple:
        return str(simple[path])
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if keyed:
        return str((meta.get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{key}="{value}"' for key, value in sorted(values.items()))
    raise ConfigError(f"{where}: fieldRef.fieldPath {path!r} is not supported")


class PodSources:
    """Reads Secrets, ConfigMaps and tokens with the agent's (admin) kubeconfig, lazily."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self._core: Any = None

    def core(self) -> Any:
        if self._core is None:
            from kubernetes import client, config

            api = config.new_client_from_config(  # type: ignore[no-untyped-call]
                config_file=str(self.kubeconfig)
            )
            self._core = client.CoreV1Api(api)
        return self._core

    # -- objects --------------------------------------------------------------------------

    def _data(self, kind: str, namespace: str, name: str) -> dict[str, bytes] | None:
        """The object's data as bytes per key; None when it does not exist."""
        from kubernetes.client.exceptions import ApiException

        core = self.core()
        try:
            if kind == "secret":
                secret = core.read_namespaced_secret(name, namespace, _request_timeout=10)
                return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
            config_map = core.read_namespaced_config_map(name, namespace, _request_timeout=10)
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        data = {k: v.encode() for k, v in (config_map.data or {}).items()}
        data.update({k: base64.b64decode(v) for k, v in (config_map.binary_data or {}).items()})
        return data

    def env_value(self, pod: PodHandle, variable: str, source: dict[str, Any]) -> str | None:
        """`configMapKeyRef` / `secretKeyRef` of one env variable; None if optional and absent."""
        for key_ref, kind in (("configMapKeyRef", "configMap"), ("secretKeyRef", "secret")):
            ref = source.get(key_ref)
            if ref is None:
                continue
            data = self._data(kind.lower(), pod.namespace, str(ref["name"]))
            value = None if data is None else data.get(str(ref["key"]))
            if value is None:
                if ref.get("optional"):
                    return None
                raise ConfigError(
                    f"env {variable}: {kind} {pod.namespace}/{ref['name']} has no key "
                    f"{ref['key']!r}"
                    if data is not None
                    else f"env {variable}: {kind} {pod.namespace}/{ref['name']} not found"
                )
            return value.decode(errors="replace")
        kind = next(iter(source), "valueFrom")
        raise ConfigError(
            f"env {variable}: valueFrom.{kind} is not supported by the process runner"
        )

    # -- volumes --------------------------------------------------------------------------

    def fill_volume(self, pod: PodHandle, volume: dict[str, Any], folder: Path) -> None:
        """Write the files of a secret / configMap / downwardAPI / projected volume."""
        name = str(volume["name"])
        where = f"volume {name}"
        files: dict[str, bytes] = {}
        if "secret" in volume:
            files = self._object_files(pod, "secret", volume["secret"], where, "secretName")
        elif "configMap" in volume:
            files = self._object_files(pod, "configMap", volume["configMap"], where, "name")
        elif "downwardAPI" in volume:
            files = self._downward_files(pod, volume["downwardAPI"], where)
        elif "projected" in volume:
            for source in volume["projected"].get("sources") or []:
                if "serviceAccountToken" in source:
                    token = source["serviceAccountToken"]
                    files[str(token.get("path", "token"))] = self._token(pod, token, where)
                elif "secret" in source:
                    files |= self._object_files(pod, "secret", source["secret"], where, "name")
                elif "configMap" in source:
                    files |= self._object_files(
                        pod, "configMap", source["configMap"], where, "name"
                    )
                elif "downwardAPI" in source:
                    files |= self._downward_files(pod, source["downwardAPI"], where)
                else:
                    kind = next(iter(source), "unknown")
                    raise ConfigError(f"{where}: projected source {kind} is not supported")
        else:
            kind = next((k for k in volume if k != "name"), "unknown")
            raise ConfigError(
                f"{where}: {kind} volumes are not supported by the process runner (emptyDir, "
                "persistentVolumeClaim, secret, configMap, downwardAPI and projected are)"
            )
        for relative, content in files.items():
            target = (folder / relative).resolve()
            if not target.is_relative_to(folder.resolve()):
                raise ConfigError(f"{where}: path {relative!r} leaves the volume")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)

    def _object_files(
        self, pod: PodHandle, kind: str, spec: dict[str, Any], where: str, name_key: str
    ) -> dict[str, bytes]:
        object_name = str(spec.get(name_key, ""))
        data = self._data(kind.lower(), pod.namespace, object_name)
        if data is None:
            if spec.get("optional"):
                return {}
            raise ConfigError(f"{where}: {kind} {pod.namespace}/{object_name} not found")
        items = spec.get("items")
        if not items:
            return dict(data)
        files = {}
        for item in items:
            key = str(item["key"])
            if key not in data:
                if spec.get("optional"):
                    continue
                raise ConfigError(
                    f"{where}: {kind} {pod.namespace}/{object_name} has no key {key!r}"
                )
            files[str(item.get("path", key))] = data[key]
        return files

    @staticmethod
    def _downward_files(pod: PodHandle, spec: dict[str, Any], where: str) -> dict[str, bytes]:
        files = {}
        for item in spec.get("items") or []:
            if "fieldRef" not in item:
                raise ConfigError(f"{where}: downwardAPI item {item.get('path')!r} needs fieldRef")
            value = field_ref(pod, str(item["fieldRef"]["fieldPath"]), where)
            files[str(item["path"])] = value.encode()
        return files

    def _token(self, pod: PodHandle, spec: dict[str, Any], where: str) -> bytes:
        """A TokenRequest token of the pod's ServiceAccount, bound to the pod as a kubelet's."""
        from kubernetes import client

        account = str(pod.pod["spec"].get("serviceAccountName") or "default")
        audience = spec.get("audience")
        request = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[audience] if audience else [],
                expiration_seconds=int(spec.get("expirationSeconds", 3607)),
                bound_object_ref=client.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=pod.name, uid=pod.uid
                ),
            )
        )
        answer = self.core().create_namespaced_service_account_token(
            account, pod.namespace, request, _request_timeout=10
        )
        if answer.status is None or not answer.status.token:
            raise ConfigError(f"{where}: TokenRequest for {pod.namespace}/{account} gave no token")
        token: str = answer.status.token
        return token.encode()
