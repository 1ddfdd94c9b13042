"""The iptables proxier against the validating fake: full/partial choice, failures, convergence."""

from __future__ import annotations

import pytest

from reconciler.errors import RestoreError
from reconciler.iptables.fake import FakeIptables
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import JUMP_RULES, IptablesConfig
from reconciler.state import ClusterState
from tests.helpers import eps, fold, svc

CONFIG = IptablesConfig(cluster_cidr="10.0.0.0/8")


def proxier_with(
    fake: FakeIptables | None = None,
) -> tuple[IptablesProxier, ClusterState, FakeIptables]:
    state = ClusterState()
    fake = fake or FakeIptables()
    return IptablesProxier(state, fake, CONFIG), state, fake


def nat_service_chains(fake: FakeIptables) -> set[str]:
    return {c for c in fake.tables["nat"].chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))}


def test_first_sync_is_full_then_partial() -> None:
    proxier, state, _ = proxier_with()
    fold([svc("a", "172.30.0.1"), eps("a", ["10.1.0.1"])], state)
    first = proxier.sync()
    assert first is not None and first.metrics.sync == "full"
    fold([eps("a", ["10.1.0.2"], event="MODIFIED")], state)
    second = proxier.sync()
    assert second is not None and second.metrics.sync == "partial"
    assert second.metrics.changed_services == 1 and second.metrics.deleted_chains == 1


def test_nothing_changed_means_no_partial_sync() -> None:
    proxier, state, fake = proxier_with()
    fold([svc("a", "172.30.0.1")], state)
    proxier.sync()
    assert proxier.sync() is None
    assert len(fake.restores) == 1


def test_failed_apply_makes_the_next_sync_full() -> None:
    proxier, state, fake = proxier_with()
    fold([svc("a", "172.30.0.1"), eps("a", ["10.1.0.1"])], state)
    proxier.sync()
    fake.fail_next = "iptables-restore: line 3 failed"
    fold([eps("a", ["10.1.0.2"], event="MODIFIED")], state)
    with pytest.raises(RestoreError):
        proxier.sync()
    assert proxier.need_full
    retry = proxier.sync()
    assert retry is not None and retry.metrics.sync == "full"
    assert "10.1.0.2:80" in "\n".join(
        r for rules in fake.tables["nat"].chains.values() for r in rules
    )


def test_drift_makes_partial_restore_fail_and_full_sync_repair_it() -> None:
    proxier, state, fake = proxier_with()
    fold(
        [
            svc("a", "172.30.0.1"),
            eps("a", ["10.1.0.1"]),
            svc("b", "172.30.0.2"),
            eps("b", ["10.2.0.1"]),
        ],
        state,
    )
    proxier.sync()
    # Somebody deletes service a's chains by hand (kube-proxy issue #121362's symptom).
    nat = fake.tables["nat"]
    for chain in [c for c in nat.chains if c.startswith("KUBE-")]:
        nat.chains[chain] = []
    for chain in [c for c in nat.chains if c.startswith(("KUBE-SVC-", "KUBE-SEP-"))]:
        del nat.chains[chain]
    fold([eps("a", ["10.1.0.9"], event="MODIFIED")], state)
    with pytest.raises(RestoreError) as info:
        proxier.sync()
    # As in kube-proxy issue #121362: the partial restore jumps to a chain that is gone.
    assert info.value.line is not None and "-j KUBE-SVC-" in info.value.line
    repaired = proxier.sync()
    assert repaired is not None and repaired.metrics.sync == "full"
    assert len(nat_service_chains(fake)) == 4


def test_full_sync_deletes_chains_left_by_an_earlier_run() -> None:
    earlier, state, fake = proxier_with()
    fold([svc("old", "172.30.0.9"), eps("old", ["10.9.0.1", "10.9.0.2"])], state)
    earlier.sync()
    leftovers = nat_service_chains(fake)
    assert len(leftovers) == 3
    fake.tables["nat"].chains["KUBE-SEP-NOTOURS"] = []  # has our prefix: removed too
    fake.tables["nat"].chains["OTHER-CHAIN"] = []  # not ours: kept

    later, state2, _ = proxier_with(fake)
    fold([svc("new", "172.30.0.10"), eps("new", ["10.10.0.1"])], state2)
    outcome = later.sync()
    assert outcome is not None
    assert set(outcome.rendered.deleted_chains) == leftovers | {"KUBE-SEP-NOTOURS"}
    assert len(nat_service_chains(fake)) == 2
    assert "OTHER-CHAIN" in fake.tables["nat"].chains


def test_jump_rules_are_added_once() -> None:
    proxier, state, fake = proxier_with()
    fold([svc("a", "172.30.0.1")], state)
    proxier.sync(full=True)
    proxier.sync(full=True)
    for jump in JUMP_RULES:
        rules = fake.tables[jump.table].chains[jump.source_chain]
        assert rules.count(jump.rule_spec) == 1, jump


def test_metrics_count_what_was_written() -> None:
    proxier, state, fake = proxier_with()
    fold([svc("a", "172.30.0.1"), eps("a", ["10.1.0.1", "10.1.0.2"])], state)
    outcome = proxier.sync()
    assert outcome is not None
    m = outcome.metrics
    assert (m.mode, m.services, m.endpoints) == ("iptables", 1, 2)
    assert m.bytes == len(fake.restores[-1].encode())
    body = [l for l in fake.restores[-1].splitlines() if l.startswith("-A ")]
    assert m.rules == len(body)
    assert m.wall_s >= 0 and m.cpu_s >= 0
