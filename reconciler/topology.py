"""Which endpoints a service port uses: kube-proxy's CategorizeEndpoints, shared by every mode."""

from __future__ import annotations

from collections.abc import Sequence

from reconciler.model import Endpoint, ServicePort


def categorize_endpoints(
    sp: ServicePort, endpoints: Sequence[Endpoint]
) -> tuple[list[Endpoint], list[Endpoint], list[Endpoint], bool]:
    """CategorizeEndpoints (pkg/proxy/topology.go), without topology hints.

    Returns (cluster, local, all reachable, has any endpoints). When no endpoint is ready,
    serving-and-terminating ones are used instead (ProxyTerminatingEndpoints).
    """
    cluster: list[Endpoint] = []
    has_any = False
    if sp.uses_cluster_endpoints:
        cluster = [ep for ep in endpoints if ep.ready]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not sp.uses_local_endpoints:
        return cluster, [], cluster, has_any

    local_ready = [ep for ep in endpoints if ep.is_local and ep.ready]
    serving_terminating = False
    for ep in endpoints:
        if ep.ready or (ep.serving and ep.terminating):
            has_any = True
    if local_ready:
        local = local_ready
    else:
        local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
        serving_terminating = bool(local)
    if not sp.uses_cluster_endpoints:
        return cluster, local, local, has_any
    if not serving_terminating:
        return cluster, local, cluster, has_any
    merged = {ep.key: ep for ep in cluster} | {ep.key: ep for ep in local}
    return cluster, local, [merged[k] for k in sorted(merged)], has_any
