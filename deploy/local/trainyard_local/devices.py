"""GPU devices of the local cluster's process nodes, handed out as NVIDIA's device plugin would
(dev/test only).

A GPU node of `nodes.py` advertises `nvidia.com/gpu` capacity; on a GPU host the process
runner runs its pods as host processes, which would all see every GPU of the host. So each
GPU node owns a range of the host's device indexes (`plan_devices`: the nodes' GPUs in turn,
node 0 first), and every container that asks for `nvidia.com/gpu` gets that many of its
node's devices that no other running container holds, through CUDA_VISIBLE_DEVICES; a
container that asks for none gets an empty CUDA_VISIBLE_DEVICES and sees no GPU. A device is
free again when its container's process ends (the scheduler counts a finished pod's GPUs as
free too) or its pod is stopped. Give the cluster no more GPUs than the host has, or the
indexes past the host's count name devices that do not exist (CUDA then sees fewer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"

#: (pod uid, container name): who holds a device.
Holder = tuple[str, str]


class DeviceError(ValueError):
    """A container's GPUs cannot be handed out (more than the node has free, a bad count)."""


def plan_devices(gpus_per_node: Sequence[tuple[str, int]]) -> dict[str, tuple[int, ...]]:
    """Host device indexes per GPU node: consecutive ranges in the order given."""
    devices: dict[str, tuple[int, ...]] = {}
    start = 0
    for node, count in gpus_per_node:
        if count > 0:
            devices[node] = tuple(range(start, start + count))
            start += count
    return devices


def gpu_request(container: Mapping[str, Any]) -> int:
    """The container's nvidia.com/gpu (its limit, else its request; extended resources are
    whole numbers and their requests equal their limits)."""
    resources = container.get("resources") or {}
    raw = (resources.get("limits") or {}).get(GPU_RESOURCE)
    if raw is None:
        raw = (resources.get("requests") or {}).get(GPU_RESOURCE, 0)
    text = str(raw)
    if not text.isdigit():
        raise DeviceError(f"resources {GPU_RESOURCE}: {text!r} is not a whole number of GPUs")
    return int(text)


class GpuDevices:
    """Which container holds which device of which node. Used from the agent's one thread."""

    def __init__(self, devices: Mapping[str, Sequence[int]]) -> None:
        self.devices = {node: tuple(ids) for node, ids in devices.items()}
        self.held: dict[Holder, tuple[str, tuple[int, ...]]] = {}

    def free(self, node: str) -> list[int]:
        taken = {i for where, ids in self.held.values() if where == node for i in ids}
        return [i for i in self.devices.get(node, ()) if i not in taken]

    def allocate(self, node: str, holder: Holder, count: int) -> tuple[int, ...]:
        """`count` free devices of `node` for `holder` (the same ones when asked again)."""
        if holder in self.held:
            return self.held[holder][1]
        if count == 0:
            return ()
        free = self.free(node)
        if count > len(free):
            has = len(self.devices.get(node, ()))
            raise DeviceError(
                f"{GPU_RESOURCE}: {count} asked for, {len(free)} of node {node}'s {has} free"
            )
        ids = tuple(free[:count])
        self.held[holder] = (node, ids)
        return ids

    def release(self, holder: Holder) -> None:
        self.held.pop(holder, None)

    def release_pod(self, uid: str) -> None:
        for holder in [h for h in self.held if h[0] == uid]:
            del self.held[holder]


def visible_devices(ids: Sequence[int]) -> str:
    """CUDA_VISIBLE_DEVICES for these devices ("" hides every GPU)."""
    return ",".join(str(i) for i in ids)
