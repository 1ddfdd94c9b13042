"""iptables proxier: drains the tracked changes, renders a full or partial sync, applies it."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.errors import ApplyError
from reconciler.iptables.dump import chain_names, parse_save
from reconciler.iptables.kernel import IptablesBackend
from reconciler.iptables.render import (
    JUMP_RULES,
    IptablesConfig,
    JumpRule,
    PortChains,
    RenderedRules,
    render,
)
from reconciler.metrics import SyncMetrics, cpu_seconds
from reconciler.model import ServicePortName
from reconciler.state import ClusterState


def missing_jumps(saved: str, jumps: Sequence[JumpRule] = JUMP_RULES) -> list[JumpRule]:
    """Jump rules from built-in chains that the kernel lacks (EnsureRule, done on full syncs)."""
    tables = parse_save(saved)
    missing = []
    for jump in jumps:
        table = tables.get(jump.table)
        rules = table.chains.get(jump.source_chain, []) if table else []
        if jump.rule_spec not in rules:
            missing.append(jump)
    return missing


@dataclass
class SyncOutcome:
    rendered: RenderedRules
    metrics: SyncMetrics


class IptablesProxier:
    """Owns what was last applied; a failed apply makes the next sync full."""

    mode = "iptables"
    pending_work = False  # everything it does is triggered by events or the sync period

    def __init__(self, state: ClusterState, backend: IptablesBackend, config: IptablesConfig):
        self.state = state
        self.backend = backend
        self.config = config
        self.need_full = True
        self._port_chains: dict[ServicePortName, PortChains] = {}

    def sync(self, *, full: bool = False, newest_event: float | None = None) -> SyncOutcome | None:
        """Apply pending changes. Returns None when a partial sync would change nothing.

        `newest_event` is the time.monotonic() at which the newest folded event arrived.
        """
        wall0, cpu0 = time.perf_counter(), cpu_seconds()
        changed = self.state.drain()
        full = full or self.need_full
        if not full and not changed:
            return None
        if full:
            # Like kube-proxy: re-read the kernel, so drift and leftovers of earlier runs
            # (stale chains, missing jumps) are repaired. The read runs during the render.
            pending = self.backend.begin_save()

            def kernel_view() -> tuple[list[str], list[JumpRule]]:
                saved = pending()
                return chain_names(saved, "nat"), missing_jumps(saved)

            rendered = render(self.state, self.config, kernel_view=kernel_view)
        else:
            rendered = render(
                self.state,
                self.config,
                changed=changed,
                previous=self._port_chains,
                missing_jumps=(),
            )
        data = rendered.text.encode()
        try:
            self.backend.restore(data)
        except ApplyError:
            self.need_full = True
            raise
        self.need_full = False
        self._port_chains = rendered.port_chains
        applied = time.monotonic()
        metrics = SyncMetrics(
            mode=self.mode,
            sync="full" if rendered.full else "partial",
            wall_s=time.perf_counter() - wall0,
            cpu_s=cpu_seconds() - cpu0,
            services=rendered.services,
            endpoints=rendered.endpoints,
            rules=rendered.rules_written,
            rules_total=rendered.rules_total,
            bytes=len(data),
            deleted_chains=len(rendered.deleted_chains),
            changed_services=len(changed),
            latency_s=None if newest_event is None else applied - newest_event,
            timestamp=time.time(),
        )
        return SyncOutcome(rendered, metrics)
