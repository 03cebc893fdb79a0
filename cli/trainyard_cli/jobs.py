"""The API calls of `kubectl trainyard`: TrainingJobs, their worker pods, and the spec
changes behind suspend, resume and restart.

Every call goes through `kube.advice`, so a refusal or an unreachable server reaches the user
as what to do; a job that is not there is a `CliError` naming the namespace looked in.
Changes are merge patches of `spec` carrying the resourceVersion that was read: a job that
changed in between (say it just finished) is read again and judged again, never patched blind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from trainyard_cli.kube import REQUEST_TIMEOUT, CliError, Target, advice, not_found_is_the_api
from trainyard_cli.kube import payload as _payload
from trainyard_operator.api.constants import (
    GROUP,
    LABEL_JOB_NAME,
    LABEL_RESTART,
    LABEL_WORKER_INDEX,
    PLURAL,
    VERSION,
)

TERMINAL = ("Succeeded", "Failed")
#: How often a change is tried again when the job moved under it (409).
PATCH_TRIES = 5
#: Jobs read per page by `list` (a namespace with thousands of jobs is read in pages).
PAGE = 500


def _custom(target: Target) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(target.api)


def _no_api(target: Target) -> CliError:
    return CliError(
        f"the TrainingJob API ({GROUP}/{VERSION}) is not installed on this cluster "
        f"({target.server}): install Trainyard's chart first (`helm install trainyard "
        "deploy/helm/trainyard -n trainyard-system --create-namespace`), or check --context"
    )


def _not_found(target: Target, name: str) -> CliError:
    ns = target.namespace
    return CliError(
        f'TrainingJob "{name}" not found in namespace "{ns}": `kubectl trainyard list -n {ns}` '
        "shows the jobs there, `kubectl trainyard list -A` those of every namespace"
    )


def list_jobs(target: Target) -> list[dict[str, Any]]:
    """Every TrainingJob in the namespace (or all of them), sorted by namespace and name."""
    custom = _custom(target)
    items: list[dict[str, Any]] = []
    token = ""
    with advice(target, "list TrainingJobs"):
        try:
            while True:
                kwargs: dict[str, Any] = {"limit": PAGE, "_preload_content": False}
                if token:
                    kwargs["_continue"] = token
                kwargs["_request_timeout"] = REQUEST_TIMEOUT
                if target.all_namespaces:
                    response = custom.list_cluster_custom_object(GROUP, VERSION, PLURAL, **kwargs)
                else:
                    response = custom.list_namespaced_custom_object(
                        GROUP, VERSION, target.namespace, PLURAL, **kwargs
                    )
                page = _payload(response)
                items += [i for i in page.get("items") or [] if isinstance(i, dict)]
                token = str((page.get("metadata") or {}).get("continue") or "")
                if not token:
                    break
        except ApiException as err:
            if err.status == 404:
                raise _no_api(target) from None
            raise
    return sorted(
        items, key=lambda j: (j["metadata"].get("namespace", ""), j["metadata"].get("name", ""))
    )


def get_job(target: Target, name: str) -> dict[str, Any]:
    """The job; CliError when it (or the API) is not there."""
    found = find_job(target, name)
    if found is None:
        raise _not_found(target, name)
    return found


def find_job(target: Target, name: str) -> dict[str, Any] | None:
    """The job, or None when there is no such job (any other failure is a CliError)."""
    with advice(target, f"read TrainingJob {name}"):
        try:
            response = _custom(target).get_namespaced_custom_object(
                GROUP,
                VERSION,
                target.namespace,
                PLURAL,
                name,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as err:
            if err.status == 404:
                if not_found_is_the_api(err):
                    raise _no_api(target) from None
                return None
            raise
    return _payload(response)


def worker_pods(target: Target, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's worker pods (by its uid, not only by label), by attempt and worker index."""
    uid = job["metadata"].get("uid")
    name = job["metadata"]["name"]
    with advice(target, f"list the pods of TrainingJob {name}"):
        response = client.CoreV1Api(target.api).list_namespaced_pod(
            target.namespace,
            label_selector=f"{LABEL_JOB_NAME}={name}",
            _preload_content=False,
            _request_timeout=REQUEST_TIMEOUT,
        )
    pods = [
        p
        for p in _payload(response).get("items") or []
        if any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or [])
    ]
    return sorted(pods, key=lambda p: (attempt_of(p), worker_index(p)))


def worker_index(pod: dict[str, Any]) -> int:
    try:
        return int((pod["metadata"].get("labels") or {}).get(LABEL_WORKER_INDEX, 0))
    except ValueError:
        return 0


def attempt_of(pod: dict[str, Any]) -> int:
    try:
        return int((pod["metadata"].get("labels") or {}).get(LABEL_RESTART, 0))
    except ValueError:
        return 0


def phase_of(job: dict[str, Any]) -> str:
    return str((job.get("status") or {}).get("phase") or "Pending")


def _patch_spec(target: Target, job: dict[str, Any], spec: dict[str, Any], doing: str) -> bool:
    """Merge-patch spec if the job is still the one read; False when it changed (409)."""
    name = job["metadata"]["name"]
    body = {"metadata": {"resourceVersion": job["metadata"]["resourceVersion"]}, "spec": spec}
    with advice(target, doing):
        try:
            _custom(target).patch_namespaced_custom_object(
                GROUP,
                VERSION,
                target.namespace,
                PLURAL,
                name,
                body,
                _preload_content=False,
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as err:
            if err.status == 409:
                return False
            if err.status == 404:
                raise _not_found(target, name) from None
            raise
    return True


def _final(job: dict[str, Any], wanted: str) -> CliError:
    name = job["metadata"]["name"]
    return CliError(
        f"TrainingJob {name} has {phase_of(job)}, and a finished job is final: nothing can "
        f"{wanted} it. Apply it again under a new name (or delete and re-create it) to train again"
    )


def set_suspended(target: Target, name: str, suspend: bool) -> str:
    """spec.suspend = `suspend`; returns what happened, in words."""
    verb = "suspend" if suspend else "resume"
    for _ in range(PATCH_TRIES):
        job = get_job(target, name)
        if phase_of(job) in TERMINAL:
            raise _final(job, verb)
        if bool((job.get("spec") or {}).get("suspend")) == suspend:
            return f"TrainingJob {name} is already {'suspended' if suspend else 'not suspended'}"
        if _patch_spec(target, job, {"suspend": suspend}, f"{verb} TrainingJob {name}"):
            if suspend:
                return (
                    f"TrainingJob {name} suspended: the operator deletes its worker pods "
                    f"(`kubectl trainyard resume {name}` starts them again, from the checkpoint)"
                )
            return (
                f"TrainingJob {name} resumed: the operator creates its worker pods again "
                "(they resume from the latest checkpoint on the job's volume)"
            )
    raise CliError(f"TrainingJob {name} kept changing; try again")


def request_restart(target: Target, name: str, now: datetime) -> str:
    """A new spec.restartRequest: the operator restarts the whole gang once."""
    for _ in range(PATCH_TRIES):
        job = get_job(target, name)
        phase = phase_of(job)
        if phase in TERMINAL:
            raise _final(job, "restart")
        if (job.get("spec") or {}).get("suspend"):
            raise CliError(
                f"TrainingJob {name} is suspended and has no workers to restart: "
                f"`kubectl trainyard resume {name}` starts a new gang"
            )
        value = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        if _patch_spec(target, job, {"restartRequest": value}, f"restart TrainingJob {name}"):
            attempt = int((job.get("status") or {}).get("restarts") or 0) + 1
            return (
                f"TrainingJob {name}: restart requested (spec.restartRequest {value}). The "
                f"operator deletes every worker pod and starts attempt {attempt}, which "
                "resumes from the latest checkpoint when the job has a PersistentVolumeClaim; "
                f"`kubectl trainyard watch {name}` follows it"
            )
    raise CliError(f"TrainingJob {name} kept changing; try again")
