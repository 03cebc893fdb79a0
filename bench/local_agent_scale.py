"""How the local cluster's fake-node agent keeps up with a few hundred pods.

Starts a LocalCluster (4 CPU nodes, fake agent) in a temporary state dir, creates N pods
that run for a few seconds, and reports per-pod latency from the create call returning to
the pod being Running (seen through a watch) as percentiles and as a ratio to the Kubernetes
pod-startup SLO (p99 <= 5 s), then the time to Succeeded and to deletion of all pods.
Numbers only; nothing is asserted. Run: `.venv/bin/python bench/local_agent_scale.py [N]`.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from kubernetes import client, config
from kubernetes.watch.watch import iter_resp_lines

from trainyard_local.cluster import LocalCluster
from trainyard_local.pytest_plugin import wait_for_service_account

SLO_SECONDS = 5.0
NAMESPACE = "bench"


def pod(i: int) -> dict[str, Any]:
    return {
        "metadata": {"name": f"p-{i}", "annotations": {"fake.trainyard.dev/run-seconds": "5"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x/y:1"}]},
    }


def main() -> None:
    count = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    with tempfile.TemporaryDirectory() as tmp:
        cluster = LocalCluster("bench", Path(tmp), cpu_nodes=4, gpu_nodes=0, tie_to_parent=True)
        with cluster:
            print(f"cluster up in {cluster.startup_seconds:.1f} s")
            api = config.new_client_from_config(config_file=str(cluster.kubeconfig))  # type: ignore[no-untyped-call]
            core = client.CoreV1Api(api)
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            wait_for_service_account(core, NAMESPACE)
            created: dict[str, float] = {}
            running: dict[str, float] = {}
            done: dict[str, float] = {}

            def watch() -> None:
                watch_api = client.CoreV1Api(
                    config.new_client_from_config(  # type: ignore[no-untyped-call]
                        config_file=str(cluster.kubeconfig)
                    )
                )
                response: Any = watch_api.list_namespaced_pod(
                    NAMESPACE, watch=True, _preload_content=False, timeout_seconds=600
                )
                for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                    event = json.loads(line)
                    name = event["object"]["metadata"]["name"]
                    phase = event["object"].get("status", {}).get("phase")
                    now = time.monotonic()
                    if phase == "Running":
                        running.setdefault(name, now)
                    if phase == "Succeeded":
                        done.setdefault(name, now)
                    if len(done) == count:
                        return

            watcher = threading.Thread(target=watch, daemon=True)
            watcher.start()
            time.sleep(0.5)
            began = time.monotonic()
            for i in range(count):
                core.create_namespaced_pod(NAMESPACE, pod(i), _preload_content=False)
                created[f"p-{i}"] = time.monotonic()
            create_seconds = time.monotonic() - began
            watcher.join(timeout=300)
            latencies = sorted(running[n] - created[n] for n in created if n in running)
            all_running = max(running.values()) - began
            all_done = max(done.values()) - began
            p50 = statistics.median(latencies)
            p99 = latencies[int(0.99 * (len(latencies) - 1))]
            print(
                f"{count} pods created in {create_seconds:.1f} s "
                f"({count / create_seconds:.0f} pods/s through the API)"
            )
            print(
                f"create -> Running: p50 {p50:.2f} s, p99 {p99:.2f} s, "
                f"p99 / {SLO_SECONDS:.0f} s SLO = {p99 / SLO_SECONDS:.2f}"
            )
            print(
                f"all Running after {all_running:.1f} s, all Succeeded after {all_done:.1f} s "
                f"(run-seconds 5)"
            )
            began = time.monotonic()
            core.delete_collection_namespaced_pod(NAMESPACE, _preload_content=False)
            while core.list_namespaced_pod(NAMESPACE, limit=1).items:
                time.sleep(0.2)
            print(f"all deleted after {time.monotonic() - began:.1f} s")
            api.close()  # type: ignore[no-untyped-call]


if __name__ == "__main__":
    main()
