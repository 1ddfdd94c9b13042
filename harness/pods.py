"""Pod networking inside a node: a namespace per pod, a veth into the node's bridge (runs in the node).

The pod CIDR is kind's, 10.244.0.0/16, with the bridge at 10.244.0.1; ClusterIPs
(10.96.0.0/12) are routed to the bridge so the node can reach them before DNAT.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

BRIDGE = "kpb0"
GATEWAY = "10.244.0.1"
POD_PREFIX_LEN = 16
SERVICE_CIDR = "10.96.0.0/12"


class PodNetworkError(RuntimeError):
    pass


@dataclass(frozen=True)
class Pod:
    name: str  # also what its backend answers with
    netns: str  # the network namespace's name under /run/netns
    ip: str
    index: int

    @property
    def netns_path(self) -> str:
        return f"/run/netns/{self.netns}"

    @property
    def host_veth(self) -> str:
        return f"kpbv{self.index}"


def pod_ip(index: int) -> str:
    host = index + 2  # .0 is the network, .1 the bridge
    if host >= 1 << 16:
        raise ValueError(f"pod index {index} does not fit 10.244.0.0/16")
    return f"10.244.{host >> 8}.{host & 0xFF}"


async def _ip(*args: str, batch: str | None = None) -> None:
    argv = ["ip", *args] if batch is None else ["ip", *args, "-batch", "-"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if batch is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate(batch.encode() if batch is not None else None)
    if proc.returncode != 0:
        raise PodNetworkError(f"ip {' '.join(args)} failed: {err.decode().strip()}")


async def setup_node_network() -> None:
    """The node's side: the bridge pods attach to, and a route for ClusterIPs."""
    await _ip(
        batch=(
            f"link add {BRIDGE} type bridge\n"
            f"addr add {GATEWAY}/{POD_PREFIX_LEN} dev {BRIDGE}\n"
            f"link set {BRIDGE} up\n"
            f"route add {SERVICE_CIDR} dev {BRIDGE}\n"
        )
    )
    # Pods reach ClusterIPs through the node (hairpin): the node must forward.
    Path("/proc/sys/net/ipv4/ip_forward").write_text("1")


async def create_pods(pods: list[Pod]) -> None:
    """Namespaces, veths and addresses for many pods with few process starts (costly in UML)."""
    if not pods:
        return
    await _ip(batch="".join(f"netns add {p.netns}\n" for p in pods))
    await _ip(
        batch="".join(
            f"link add {p.host_veth} type veth peer name eth0 netns {p.netns}\n"
            f"link set {p.host_veth} master {BRIDGE} up\n"
            for p in pods
        )
    )
    await asyncio.gather(
        *(
            _ip(
                "-n",
                p.netns,
                batch=(
                    f"link set lo up\n"
                    f"addr add {p.ip}/{POD_PREFIX_LEN} dev eth0\n"
                    f"link set eth0 up\n"
                    f"route add default via {GATEWAY}\n"
                ),
            )
            for p in pods
        )
    )


async def delete_pods(pods: list[Pod]) -> None:
    """Deleting a namespace deletes its veth pair too."""
    if pods:
        await _ip(batch="".join(f"netns del {p.netns}\n" for p in pods))
