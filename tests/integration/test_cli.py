"""`kubectl trainyard` against the embedded cluster, run as a user runs it: the console script
`kubectl-trainyard` as a subprocess with a kubeconfig (once through kubectl itself, which
finds it on the PATH as a plugin), the operator running under its own ServiceAccount, pods
driven by the fake-node agent's annotations. The live view, logs and progress of a real
trainer are in tests/e2e/test_cli_live.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from integration.operator_fixtures import Jobs, condition, wait_for
from trainyard_local import binaries
from trainyard_local.operator_process import OperatorProcess

pytestmark = pytest.mark.integration

PLUGIN = Path(sys.executable).parent / "kubectl-trainyard"
RESULTS = {
    "accuracy": 0.9694,
    "parameters": 199210,
    "modelBytes": 207770,
    "stages": [
        {
            "name": "train",
            "accuracy": 0.9694,
            "modelBytes": 798310,
            "sparsity": 0.0,
            "seconds": 2.9,
        },
        {"name": "quantize", "accuracy": 0.9688, "modelBytes": 207770, "sparsity": 0.0},
    ],
    "artifactPath": "/output/model-final.pt",
}
#: A worker that runs until the test is done with it.
FOREVER = {"fake.trainyard.dev/run-seconds": "3600"}


def trainyard(
    *args: str, kubeconfig: Path | None, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """The console script, as a user's shell would run it (nothing inherited from pytest's
    KUBECONFIG or HOME unless given)."""
    base = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "HOME")}
    flags = [f"--kubeconfig={kubeconfig}"] if kubeconfig else []
    return subprocess.run(
        [str(PLUGIN), *args, *flags],
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def rows(output: str) -> dict[str, list[str]]:
    """`list` output by job name (the first column, or the second with -A)."""
    lines = output.splitlines()
    header = lines[0].split()
    at = header.index("NAME")
    return {line.split()[at]: line.split() for line in lines[1:] if line.strip()}


def test_list_through_kubectl_and_everywhere(
    operator: OperatorProcess, jobs: Jobs, namespace: str, kubeconfig: Path
) -> None:
    jobs.create("alpha", workers=2, pod_annotations=FOREVER)
    jobs.create("beta", workers=1, pod_annotations=FOREVER)
    jobs.wait_phase("alpha", "Running")
    jobs.wait_phase("beta", "Running")

    # kubectl finds kubectl-trainyard on the PATH and runs it as `kubectl trainyard`.
    kubectl = binaries.binary("kubectl")
    path = f"{PLUGIN.parent}{os.pathsep}{os.environ.get('PATH', '')}"
    done = subprocess.run(
        [str(kubectl), "trainyard", "list", "-n", namespace],
        env={**os.environ, "PATH": path, "KUBECONFIG": str(kubeconfig)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    header = done.stdout.splitlines()[0].split()
    expected = ["NAME", "PHASE", "WORKERS", "STAGE", "PROGRESS", "ETA", "LOSS"]
    assert header[: len(expected)] == expected
    table = rows(done.stdout)
    assert set(table) == {"alpha", "beta"}
    assert table["alpha"][1:3] == ["Running", "2/2"]
    assert table["beta"][1:3] == ["Running", "1/1"]

    everywhere = trainyard("list", "-A", kubeconfig=kubeconfig)
    assert everywhere.returncode == 0, everywhere.stderr
    assert everywhere.stdout.split()[0] == "NAMESPACE"
    mine = [line.split() for line in everywhere.stdout.splitlines() if namespace in line]
    assert sorted(row[1] for row in mine) == ["alpha", "beta"]

    # A namespace without jobs says so, like kubectl, and is no error.
    empty = trainyard("list", "-n", "default", kubeconfig=kubeconfig)
    assert empty.returncode == 0 and 'No TrainingJobs found in namespace "default"' in empty.stderr


def test_watch_follows_a_job_to_its_results(
    operator: OperatorProcess, jobs: Jobs, namespace: str, kubeconfig: Path
) -> None:
    # The workers run until the test has seen `watch` show them running, then exit 0.
    jobs.create("digits", workers=2, compression=[{"quantize": {"method": "dynamic"}}])
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "HOME")}
    watcher = subprocess.Popen(
        [str(PLUGIN), "watch", "digits", "-n", namespace, f"--kubeconfig={kubeconfig}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stdout is not None
        seen: list[str] = []
        for line in watcher.stdout:  # ends if watch exits early (then the asserts say why)
            seen.append(line)
            if line.startswith("digits Running workers 2/2"):
                break
        assert seen and seen[-1].startswith("digits Running"), "".join(seen)
        for pod in jobs.pods("digits"):
            jobs.annotate_pod(
                pod["metadata"]["name"],
                {
                    "fake.trainyard.dev/exit-code": "0",
                    "fake.trainyard.dev/termination-message": json.dumps(RESULTS),
                },
            )
        rest, err = watcher.communicate(timeout=300)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    out = "".join(seen) + rest
    assert watcher.returncode == 0, out + err
    # Not a terminal: one line per change, like `kubectl get -w`, then the results table.
    phases = [line.split()[1] for line in out.splitlines() if line.startswith("digits ")]
    assert phases[-2:] == ["Running", "Succeeded"], out
    for text in ("train", "quantize", "0.9694", "0.9688", "779.6 KiB", "0.26x"):
        assert text in out.split("Results (status.results)", 1)[1], out
    assert "final: accuracy 0.9694, 199210 parameters" in out

    results = trainyard("results", "digits", "-n", namespace, kubeconfig=kubeconfig)
    assert results.returncode == 0, results.stderr
    assert "Results (status.results)" in results.stdout and "0.26x" in results.stdout


def test_watch_of_a_failed_job_says_why_and_exits_1(
    operator: OperatorProcess, jobs: Jobs, namespace: str, kubeconfig: Path
) -> None:
    jobs.create(
        "broken",
        workers=1,
        runPolicy={"restartPolicy": "Never"},
        pod_annotations={
            "fake.trainyard.dev/run-seconds": "1",
            "fake.trainyard.dev/exit-code": "3",
            "fake.trainyard.dev/termination-message": "error: trainer.dataPath: no such folder",
        },
    )
    done = trainyard("watch", "broken", "-n", namespace, "--timeout", "300", kubeconfig=kubeconfig)
    assert done.returncode == 1, done.stdout + done.stderr
    last = done.stdout.splitlines()[-1]
    assert last.startswith("broken Failed"), done.stdout
    assert "WorkerFailed: worker 0 failed with exit code 3" in last
    assert "trainer.dataPath: no such folder" in last

    results = trainyard("results", "broken", "-n", namespace, kubeconfig=kubeconfig)
    assert results.returncode == 1
    assert "has no results yet: it is Failed (WorkerFailed: worker 0 failed" in results.stderr


def test_suspend_resume_and_restart(
    operator: OperatorProcess, jobs: Jobs, namespace: str, kubeconfig: Path
) -> None:
    jobs.create("steer", workers=2, pod_annotations=FOREVER)
    jobs.wait_pods("steer", 2, restart=0)
    jobs.wait_phase("steer", "Running")

    def run(*args: str) -> str:
        done = trainyard(*args, "steer", "-n", namespace, kubeconfig=kubeconfig)
        assert done.returncode == 0, done.stderr
        return done.stdout

    assert "suspended: the operator deletes its worker pods" in run("suspend")
    jobs.wait_phase("steer", "Suspended")
    wait_for("the workers to go", lambda: not jobs.pods("steer"))
    assert "already suspended" in run("suspend")
    assert "resumed" in run("resume")
    jobs.wait_pods("steer", 2, restart=0)
    jobs.wait_phase("steer", "Running")

    out = run("restart")
    assert "restart requested" in out and "starts attempt 1" in out
    # The operator restarts the whole gang once: attempt 1, not counted as a failure.
    jobs.wait_pods("steer", 2, restart=1)
    status = jobs.wait_phase("steer", "Running")
    assert status["restarts"] == 1 and status["disruptions"] == 1
    restarting = condition(status, "Restarting")
    assert restarting is not None and restarting["status"] == "False"
    kind, _, message = jobs.wait_event("steer", "GangRestart")
    assert kind == "Normal" and "spec.restartRequest changed to" in message
    assert "asked for, not counted against backoffLimit" in message
    assert status["restartRequest"] == jobs.get("steer")["spec"]["restartRequest"]  # type: ignore[index]


def test_a_finished_job_cannot_be_restarted_or_suspended(
    operator: OperatorProcess, jobs: Jobs, namespace: str, kubeconfig: Path
) -> None:
    jobs.create("over", workers=1, pod_annotations={"fake.trainyard.dev/run-seconds": "1"})
    jobs.wait_phase("over", "Succeeded")
    for command in ("restart", "suspend"):
        done = trainyard(command, "over", "-n", namespace, kubeconfig=kubeconfig)
        assert done.returncode == 1
        assert "has Succeeded, and a finished job is final" in done.stderr, done.stderr
    assert jobs.status("over")["restarts"] == 0
    assert not jobs.get("over")["spec"].get("restartRequest")  # type: ignore[index]


def test_errors_say_what_to_do(
    jobs: Jobs,
    namespace: str,
    kubeconfig: Path,
    sa_kubeconfig: object,
    tmp_path: Path,
) -> None:
    missing = trainyard("watch", "nope", "-n", namespace, kubeconfig=kubeconfig)
    assert missing.returncode == 1
    assert f'TrainingJob "nope" not found in namespace "{namespace}"' in missing.stderr
    assert f"kubectl trainyard list -n {namespace}" in missing.stderr

    # A user with no rights in the namespace (a ServiceAccount bound to nothing).
    viewer = sa_kubeconfig(namespace, "no-rights")  # type: ignore[operator]
    denied = trainyard("list", kubeconfig=viewer)  # the context's namespace
    assert denied.returncode == 1
    assert "forbidden" in denied.stderr and "cannot list resource" in denied.stderr
    assert namespace in denied.stderr and "Ask a cluster admin for a Role" in denied.stderr

    wrong = trainyard("list", "--context", "elsewhere", kubeconfig=kubeconfig)
    assert wrong.returncode == 1 and "--context elsewhere: no such context" in wrong.stderr

    nothing = trainyard("list", kubeconfig=None, env={"HOME": str(tmp_path)})
    assert nothing.returncode == 1
    assert "no kubeconfig found" in nothing.stderr and "--kubeconfig" in nothing.stderr
    # With KUBECONFIG set it is used, as kubectl uses it.
    via_env = trainyard(
        "list", "-n", namespace, kubeconfig=None, env={"KUBECONFIG": str(kubeconfig)}
    )
    assert via_env.returncode == 0, via_env.stderr
