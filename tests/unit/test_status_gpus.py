"""`spec.resources.gpus: auto` on plain values: the rule of `status.gpus` and how `reconcile`
records, keeps and changes a choice.

What a user sees is the number each worker gets (status.gpus.perWorker, the pods' limits) and
the event that says why; the cluster is given as the node and quota views the handlers read.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from trainyard_operator.api import TrainingJob
from trainyard_operator.status import PodView, implied_events, reconcile
from trainyard_operator.status.gpus import (
    GpuCapacity,
    NodeView,
    QuotaView,
    ScopeRequirement,
    Taint,
    choose,
    unmet,
)

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
GPU_TAINT = Taint("nvidia.com/gpu", "present", "NoSchedule")


def job(workers: int = 2, gpus: Any = "auto", **spec: Any) -> TrainingJob:
    return TrainingJob.from_object(
        {
            "metadata": {"name": "j", "namespace": "ns", "uid": "u1", "generation": 1},
            "spec": {"workers": workers, "resources": {"gpus": gpus}, **spec},
        }
    )


def gpu_node(name: str, gpus: int = 8, **kw: Any) -> NodeView:
    labels = {"pool": "gpu", "kubernetes.io/hostname": name, **kw.pop("labels", {})}
    taints = kw.pop("taints", (GPU_TAINT,))
    return NodeView(name=name, gpus=gpus, labels=labels, taints=taints, **kw)


def nodes(*views: NodeView, quotas: tuple[QuotaView, ...] = (), **kw: Any) -> GpuCapacity:
    return GpuCapacity(nodes=views, quotas=quotas, **kw)


TWO_OF_8 = nodes(gpu_node("g0"), gpu_node("g1"))


# --- the rule -----------------------------------------------------------------------------


def test_a_cpu_only_cluster_gets_zero() -> None:
    choice = choose(job(), nodes())
    assert (choice.per_worker, choice.reason) == (0, "NoGpuNodes")
    assert "no node of the cluster has nvidia.com/gpu" in choice.message
    assert "CPU, gloo" in choice.message


def test_gpu_nodes_of_8_give_each_worker_the_most_that_fits_at_once() -> None:
    # a whole node each when there are as many nodes as workers
    assert choose(job(workers=2), TWO_OF_8).per_worker == 8
    # fewer nodes than workers: the nodes are shared evenly
    assert choose(job(workers=4), TWO_OF_8).per_worker == 4
    assert choose(job(workers=3), nodes(gpu_node("g0"))).per_worker == 2
    # one GPU each when only that fits
    assert choose(job(workers=16), TWO_OF_8).per_worker == 1
    choice = choose(job(workers=2), TWO_OF_8)
    assert choice.reason == "GpusFit"
    assert "all 2 workers fit at once on the 2 GPU nodes the workers may use (8, 8 GPUs)" in (
        choice.message
    )


def test_more_workers_than_gpus_gets_zero() -> None:
    choice = choose(job(workers=17), TWO_OF_8)
    assert (choice.per_worker, choice.reason) == (0, "GpusDoNotFit")
    assert "fewer than one GPU per worker for 17 workers" in choice.message


def test_a_node_selector_that_excludes_the_gpu_nodes_gets_zero() -> None:
    spec = {"scheduling": {"nodeSelector": {"pool": "cpu"}}}
    choice = choose(job(**spec), TWO_OF_8)
    assert (choice.per_worker, choice.reason) == (0, "NoGpuNodes")
    assert "2 left out by spec.scheduling.nodeSelector (g0, g1)" in choice.message


def test_cordoned_and_not_ready_gpu_nodes_get_zero_and_the_message_says_why() -> None:
    capacity = nodes(
        gpu_node("g0", unschedulable=True),
        gpu_node("g1", unschedulable=True),
        gpu_node("g2", ready=False),
    )
    choice = choose(job(), capacity)
    assert (choice.per_worker, choice.reason) == (0, "NoGpuNodes")
    assert "none of the 3 nodes with nvidia.com/gpu is one the workers may use" in choice.message
    assert "2 cordoned (g0, g1)" in choice.message
    assert "1 NotReady (g2)" in choice.message


def test_a_cordoned_node_leaves_the_others_in_use() -> None:
    choice = choose(job(workers=2), nodes(gpu_node("g0", unschedulable=True), gpu_node("g1")))
    assert choice.per_worker == 4  # both workers share the one node left
    assert "left out: 1 cordoned (g0)" in choice.message


def test_a_namespace_quota_of_zero_gpus_gets_zero_naming_the_quota() -> None:
    quota = QuotaView("gpu-quota", 0, "requests.nvidia.com/gpu")
    choice = choose(job(), nodes(gpu_node("g0"), gpu_node("g1"), quotas=(quota,)))
    assert (choice.per_worker, choice.reason) == (0, "QuotaTooSmall")
    assert "ResourceQuota gpu-quota allows 0 (requests.nvidia.com/gpu)" in choice.message


def test_the_quota_caps_the_choice() -> None:
    quota = QuotaView("q", 6)
    choice = choose(job(workers=2), nodes(gpu_node("g0"), gpu_node("g1"), quotas=(quota,)))
    assert choice.per_worker == 3
    assert "within the namespace's ResourceQuota q (requests.nvidia.com/gpu: 6)" in choice.message


def test_quota_scopes_that_do_not_take_in_the_workers_do_not_count() -> None:
    scoped = (
        QuotaView("terminating", 0, scopes=(ScopeRequirement("Terminating"),)),
        QuotaView("best-effort", 0, scopes=(ScopeRequirement("BestEffort"),)),
        QuotaView("other-class", 0, scopes=(ScopeRequirement("PriorityClass", "In", ("high",)),)),
    )
    assert choose(job(), nodes(gpu_node("g0"), gpu_node("g1"), quotas=scoped)).per_worker == 8
    mine = (QuotaView("mine", 2, scopes=(ScopeRequirement("PriorityClass", "In", ("high",)),)),)
    high = job(scheduling={"priorityClassName": "high"})
    assert choose(high, nodes(gpu_node("g0"), gpu_node("g1"), quotas=mine)).per_worker == 1
    not_terminating = (
        QuotaView("nt", 0, scopes=(ScopeRequirement("Terminating", "DoesNotExist"),)),
    )
    assert choose(job(), nodes(gpu_node("g0"), quotas=not_terminating)).per_worker == 0


def test_taints_the_workers_do_not_tolerate_keep_them_off() -> None:
    reserved = Taint("dedicated", "team-b", "NoSchedule")
    capacity = nodes(gpu_node("g0", taints=(GPU_TAINT, reserved)))
    choice = choose(job(workers=1), capacity)
    assert choice.per_worker == 0
    assert "tainted dedicated:NoSchedule (g0)" in choice.message
    toleration = {"key": "dedicated", "operator": "Equal", "value": "team-b"}
    tolerant = job(workers=1, scheduling={"tolerations": [toleration]})
    assert choose(tolerant, capacity).per_worker == 8
    soft = nodes(gpu_node("g0", taints=(Taint("x", "", "PreferNoSchedule"),)))
    assert choose(job(workers=1), soft).per_worker == 8


def test_required_node_affinity_is_followed() -> None:
    capacity = nodes(
        gpu_node("a", labels={"zone": "1", "size": "8"}),
        gpu_node("b", 4, labels={"zone": "2", "size": "4"}),
    )

    def required(*terms: dict[str, Any]) -> TrainingJob:
        affinity = {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
            }
        }
        return job(workers=1, scheduling={"affinity": affinity})

    zone2 = {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["2"]}]}
    assert choose(required(zone2), capacity).per_worker == 4
    small = {"matchExpressions": [{"key": "size", "operator": "Lt", "values": ["5"]}]}
    assert choose(required(small), capacity).per_worker == 4
    by_name = {"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["a"]}]}
    assert choose(required(by_name), capacity).per_worker == 4
    assert choose(required(zone2, by_name, {"matchExpressions": []}), capacity).per_worker == 4
    nowhere = {"matchExpressions": [{"key": "gone", "operator": "Exists"}]}
    choice = choose(required(nowhere), capacity)
    assert choice.per_worker == 0
    assert "2 left out by spec.scheduling.affinity (a, b)" in choice.message


def test_an_integer_procs_per_worker_allows_only_one_gpu_per_process() -> None:
    assert choose(job(procsPerWorker=2), TWO_OF_8).per_worker == 2
    choice = choose(job(workers=2, procsPerWorker=8), nodes(gpu_node("g0")))
    assert (choice.per_worker, choice.reason) == (0, "GpusDoNotFit")
    assert "spec.procsPerWorker 8" in choice.message


def test_without_node_reads_auto_takes_the_fallback_capped_by_the_quota() -> None:
    unread = GpuCapacity(nodes=None)
    choice = choose(job(), unread)
    assert (choice.per_worker, choice.reason) == (0, "NodesNotRead")
    assert "TRAINYARD_READ_NODES" in choice.message
    assert "TRAINYARD_GPU_AUTO_FALLBACK=0" in choice.message
    assert choose(job(), GpuCapacity(nodes=None, fallback=4)).per_worker == 4
    capped = GpuCapacity(nodes=None, fallback=4, quotas=(QuotaView("q", 2),))
    assert choose(job(workers=2), capped).per_worker == 1
    nothing = GpuCapacity(nodes=None, fallback=4, quotas=(QuotaView("q", 0),))
    assert choose(job(), nothing).reason == "QuotaTooSmall"


def test_a_choice_is_unmet_only_when_the_cluster_can_no_longer_hold_it() -> None:
    assert unmet(job(), TWO_OF_8, 8) is None
    assert unmet(job(), nodes(), 0) is None  # CPU can always be met
    gone = unmet(job(), nodes(gpu_node("g0")), 8)
    assert gone is not None and "no longer hold 2 workers of 8 GPUs" in gone
    lowered = unmet(job(), nodes(gpu_node("g0"), gpu_node("g1"), quotas=(QuotaView("q", 8),)), 8)
    assert lowered is not None and "ResourceQuota q now allows 8" in lowered
    assert unmet(job(procsPerWorker=2), TWO_OF_8, 8) is not None


# --- properties of the rule ---------------------------------------------------------------

node_strategy = st.builds(
    NodeView,
    name=st.text("abcdefgh", min_size=1, max_size=6),
    gpus=st.integers(1, 16),
    labels=st.fixed_dictionaries({"pool": st.sampled_from(["gpu", "cpu"])}),
    taints=st.just((GPU_TAINT,)),
    unschedulable=st.booleans(),
    ready=st.booleans(),
)
clusters = st.lists(node_strategy, max_size=6, unique_by=lambda n: n.name)
quotas = st.one_of(st.none(), st.integers(0, 64))
SELECTORS = ({}, {"pool": "gpu"})


def _capacity(views: list[NodeView], quota: int | None) -> GpuCapacity:
    limits = (QuotaView("q", quota),) if quota is not None else ()
    return GpuCapacity(nodes=tuple(views), quotas=limits)


def _fits(views: list[NodeView], workers: int, quota: int | None, gpus: int, sel: Any) -> bool:
    usable = [
        n
        for n in views
        if n.ready and not n.unschedulable and all(n.labels.get(k) == v for k, v in sel.items())
    ]
    return sum(n.gpus // gpus for n in usable) >= workers and (
        quota is None or workers * gpus <= quota
    )


@settings(max_examples=300, deadline=None)
@given(clusters, st.integers(1, 8), quotas, st.sampled_from(SELECTORS))
def test_the_choice_fits_and_one_more_gpu_would_not(
    views: list[NodeView], workers: int, quota: int | None, selector: dict[str, str]
) -> None:
    j = job(workers=workers, scheduling={"nodeSelector": selector})
    choice = choose(j, _capacity(views, quota))
    if choice.per_worker:
        assert _fits(views, workers, quota, choice.per_worker, selector)
        assert choice.per_worker == 64 or not _fits(
            views, workers, quota, choice.per_worker + 1, selector
        )
    else:
        assert not _fits(views, workers, quota, 1, selector)
    # a fresh choice is one the same cluster meets
    assert unmet(j, _capacity(views, quota), choice.per_worker) is None


@settings(max_examples=200, deadline=None)
@given(clusters, node_strategy, st.integers(1, 8), quotas)
def test_more_nodes_never_lower_and_a_lower_quota_never_raises_the_choice(
    views: list[NodeView], extra: NodeView, workers: int, quota: int | None
) -> None:
    j = job(workers=workers)
    before = choose(j, _capacity(views, quota)).per_worker
    grown = [*views, NodeView(f"{extra.name}-x", extra.gpus, extra.labels, extra.taints)]
    assert choose(j, _capacity(grown, quota)).per_worker >= before
    if quota is not None and quota > 0:
        assert choose(j, _capacity(views, quota - 1)).per_worker <= before


# --- recorded in status, kept across gangs, changed only when unmet -----------------------


def pod(index: int, restart: int = 0, phase: str = "Running", **kw: Any) -> PodView:
    return PodView(
        name=f"j-worker-{index}",
        uid=f"uid-{restart}-{index}",
        job="j",
        index=index,
        restart=restart,
        phase=phase,
        ready=phase == "Running",
        created=T0,
        **kw,
    )


def step(j: TrainingJob, plan: Any) -> TrainingJob:
    return j.model_copy(update={"status": plan.status})


def test_a_gang_waits_for_the_capacity_then_records_the_choice_and_says_why() -> None:
    first = reconcile(job(), [], T0)
    assert first.needs_capacity
    assert first.create_workers == ()
    plan = reconcile(job(), [], T0, capacity=TWO_OF_8)
    assert not plan.needs_capacity
    assert plan.create_workers == (0, 1)
    gpus = plan.status.gpus
    assert gpus is not None
    assert (gpus.per_worker, gpus.reason, gpus.previous) == (8, "GpusFit", None)
    assert gpus.decided_at == "2026-01-01T12:00:00Z"
    (event,) = [e for e in plan.events if e.reason == "GpusChosen"]
    assert event.type == "Normal"
    assert event.message == gpus.message
    # an operator restarted right after the status write posts the same event (a 409)
    implied = implied_events(plan.status, T0, warn_checkpoints=False)
    assert event in implied
    # the pods are built from the written status
    assert step(job(), plan).gpus == 8
    assert step(job(), plan).procs == 8


def test_an_integer_never_asks_for_the_capacity() -> None:
    plan = reconcile(job(gpus=2), [], T0)
    assert not plan.needs_capacity
    assert plan.create_workers == (0, 1)
    assert plan.status.gpus is None


def test_a_gang_restart_keeps_the_choice_while_the_cluster_meets_it() -> None:
    j = step(job(), reconcile(job(), [], T0, capacity=TWO_OF_8))
    j = step(j, reconcile(j, [pod(0), pod(1)], T0 + timedelta(seconds=1), capacity=TWO_OF_8))
    failed = pod(1, phase="Failed", exit_code=137)
    j = step(j, reconcile(j, [pod(0), failed], T0 + timedelta(seconds=2), capacity=TWO_OF_8))
    assert j.status.restarts == 1
    # bigger nodes appeared meanwhile: the choice is kept all the same
    bigger = nodes(gpu_node("g0"), gpu_node("g1"), gpu_node("g2", 16), gpu_node("g3", 16))
    plan = reconcile(j, [], T0 + timedelta(seconds=3), capacity=bigger)
    assert plan.create_workers == (0, 1)
    assert plan.status.gpus == j.status.gpus
    assert not [e for e in plan.events if e.reason.startswith("Gpus")]


def test_a_gang_restart_after_a_gpu_node_vanished_changes_the_choice_and_warns() -> None:
    j = step(job(), reconcile(job(), [], T0, capacity=TWO_OF_8))
    j = step(j, reconcile(j, [pod(0), pod(1)], T0 + timedelta(seconds=1), capacity=TWO_OF_8))
    j = step(j, reconcile(j, [pod(0)], T0 + timedelta(seconds=2), capacity=TWO_OF_8))
    assert j.status.restarts == 1  # worker 1 lost with its node
    plan = reconcile(j, [], T0 + timedelta(seconds=3), capacity=nodes(gpu_node("g0")))
    gpus = plan.status.gpus
    assert gpus is not None
    assert (gpus.per_worker, gpus.previous) == (4, 8)
    assert gpus.message.startswith("8 per worker can no longer be met (the GPU nodes")
    (event,) = [e for e in plan.events if e.reason == "GpusChanged"]
    assert event.type == "Warning"
    assert event.message == gpus.message
    assert event in implied_events(plan.status, T0 + timedelta(seconds=3), warn_checkpoints=False)


def test_missing_workers_of_a_gang_get_what_the_others_got() -> None:
    j = step(job(), reconcile(job(), [], T0, capacity=TWO_OF_8))
    plan = reconcile(j, [pod(0, phase="Pending")], T0 + timedelta(seconds=1))
    assert not plan.needs_capacity
    assert plan.create_workers == (1,)
    assert plan.status.gpus == j.status.gpus


# --- what the handlers read into these views ----------------------------------------------


def test_nodes_and_quotas_are_read_as_the_rule_needs_them() -> None:
    from trainyard_operator.handlers.capacity import node_view, quota_view

    node = {
        "metadata": {"name": "g0", "labels": {"pool": "gpu"}},
        "spec": {
            "unschedulable": True,
            "taints": [{"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"}],
        },
        "status": {
            "allocatable": {"nvidia.com/gpu": "8", "cpu": "32"},
            "conditions": [{"type": "Ready", "status": "False"}],
        },
    }
    view = node_view(node)
    assert view == NodeView("g0", 8, {"pool": "gpu"}, (GPU_TAINT,), unschedulable=True, ready=False)
    # nodes without GPUs are not kept at all
    assert node_view({"metadata": {"name": "c0"}, "status": {"allocatable": {"cpu": "8"}}}) is None
    quota = {
        "metadata": {"name": "q"},
        "spec": {
            "hard": {"requests.nvidia.com/gpu": "4", "nvidia.com/gpu": "6", "cpu": "10"},
            "scopes": ["NotTerminating"],
            "scopeSelector": {
                "matchExpressions": [
                    {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}
                ]
            },
        },
    }
    assert quota_view(quota) == QuotaView(
        "q",
        4,
        "requests.nvidia.com/gpu",
        (ScopeRequirement("NotTerminating"), ScopeRequirement("PriorityClass", "In", ("high",))),
    )
    assert quota_view({"metadata": {"name": "cpu"}, "spec": {"hard": {"cpu": "4"}}}) is None
