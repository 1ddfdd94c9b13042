"""Nodes: a Linux kernel and network namespace where the reconciler, pods and clients run."""

from harness.node.base import Node, NodeInfo, NodeUnavailable, create_node

__all__ = ["Node", "NodeInfo", "NodeUnavailable", "create_node"]
