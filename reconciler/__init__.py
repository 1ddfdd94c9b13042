"""kpbench reconciler: kube-proxy's rule programming re-implemented over a watch-event log."""

__version__ = "0.1.0"
