"""Packet tracer over iptables rules: where can a new connection go, masqueraded or not?

A port of kube-proxy's test tracer (pkg/proxy/iptables/proxier_test.go): it walks nat
PREROUTING (or OUTPUT for traffic from the node itself) and then the filter chains, follows
every branch of a `-m statistic` cascade so all reachable endpoints are collected, and
treats rules that need connection state (--rcheck, --mark, --ctstate) as not matching,
since it traces only the first packet of a new connection.
"""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass, field

from reconciler.iptables.dump import Table

_TERMINAL = {"ACCEPT", "DROP", "REJECT", "DNAT"}


@dataclass(frozen=True)
class Trace:
    """Outcome of a traced connection.

    `verdict` is DNAT (then `endpoints` maps each reachable "ip:port" to whether that path
    is masqueraded), REJECT, DROP, ACCEPT, or "" when no kube-proxy rule applies.
    """

    verdict: str
    endpoints: dict[str, bool] = field(default_factory=dict)
    masquerade: bool = False

    @property
    def destinations(self) -> list[str]:
        return sorted(self.endpoints)


@dataclass(frozen=True)
class _Rule:
    chain: str
    matches: tuple[tuple[str, bool, str], ...]  # (option, negated, value)
    target: str | None
    to_destination: str | None
    probability: float | None


class _State:
    def __init__(self) -> None:
        self.masq = False


class Tracer:
    """Traces against parsed tables; `node_ips` are the addresses --dst-type LOCAL matches."""

    def __init__(self, tables: dict[str, Table], node_ips: tuple[str, ...] = ("192.168.0.2",)):
        self.local = [ipaddress.ip_network("127.0.0.0/8")] + [
            ipaddress.ip_network(ip) for ip in node_ips
        ]
        self.rules: dict[tuple[str, str], list[_Rule]] = {
            (name, chain): [_parse(chain, spec) for spec in specs]
            for name, table in tables.items()
            for chain, specs in table.chains.items()
        }

    def trace(self, source: str, destination: str, port: int, protocol: str = "tcp") -> Trace:
        packet = {"src": source, "dst": destination, "dport": port, "proto": protocol.lower()}
        from_node = self._is_local(source)
        entry = "OUTPUT" if from_node else "PREROUTING"
        outcomes: list[tuple[str, str | None, bool]] = []
        self._run("nat", entry, packet, False, outcomes)
        dnat = [(dest, masq) for verdict, dest, masq in outcomes if verdict == "DNAT" and dest]
        if dnat:
            return Trace("DNAT", {d: m for d, m in sorted(dnat)}, any(m for _, m in dnat))
        # Not DNATed: the filter table decides (REJECT/DROP for services without endpoints).
        for chain in (
            "KUBE-SERVICES",
            "KUBE-EXTERNAL-SERVICES",
            "KUBE-NODEPORTS",
            "KUBE-PROXY-FIREWALL",
        ):
            results: list[tuple[str, str | None, bool]] = []
            self._run("filter", chain, packet, False, results)
            for verdict, _, masq in results:
                if verdict in _TERMINAL:
                    return Trace(verdict, masquerade=masq)
        return Trace("", masquerade=any(m for _, _, m in outcomes))

    def _run(
        self,
        table: str,
        chain: str,
        packet: dict[str, object],
        masq: bool,
        outcomes: list[tuple[str, str | None, bool]],
    ) -> bool:
        """Walk a chain; append terminal outcomes; True if every path ended terminally."""
        for rule in self.rules.get((table, chain), []):
            if not self._matches(rule, packet):
                continue
            target = rule.target
            if target is None:
                continue
            if target == "KUBE-MARK-MASQ":
                masq = True
                continue
            if target == "MARK" or target == "MASQUERADE":
                continue
            if target == "RETURN":
                outcomes.append(("RETURN", None, masq))
                return False
            if target in _TERMINAL:
                outcomes.append((target, rule.to_destination, masq))
                return True
            ended = self._run(table, target, packet, masq, outcomes)
            if rule.probability is not None:
                continue  # the branch not taken goes on down this chain
            if ended:
                return True
        return False

    def _matches(self, rule: _Rule, packet: dict[str, object]) -> bool:
        for option, negated, value in rule.matches:
            if option in ("--rcheck", "--mark", "--ctstate"):
                return False
            if option == "-s":
                ok = self._in(str(packet["src"]), value)
            elif option == "-d":
                ok = self._in(str(packet["dst"]), value)
            elif option == "-p":
                ok = packet["proto"] == value
            elif option == "--dport":
                ok = packet["dport"] == int(value)
            elif option == "--dst-type":
                ok = value == "LOCAL" and self._is_local(str(packet["dst"]))
            elif option == "--src-type":
                ok = value == "LOCAL" and self._is_local(str(packet["src"]))
            else:
                raise ValueError(f"tracer does not understand {option} in chain {rule.chain}")
            if ok == negated:
                return False
        return True

    @staticmethod
    def _in(ip: str, cidr: str) -> bool:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(cidr, strict=False)

    def _is_local(self, ip: str) -> bool:
        address = ipaddress.ip_address(ip)
        return any(address in net for net in self.local)


# Options that take a value and only describe or select modules.
_IGNORED_WITH_VALUE = {
    "-m",
    "--comment",
    "--mode",
    "--name",
    "--seconds",
    "--or-mark",
    "--xor-mark",
}
_IGNORED_FLAGS = {"--set", "--reap", "--random-fully"}
_MATCHES = {"-s", "-d", "-p", "--dport", "--dst-type", "--src-type", "--mark", "--ctstate"}


def _parse(chain: str, spec: str) -> _Rule:
    tokens = shlex.split(spec)
    matches: list[tuple[str, bool, str]] = []
    target = to_destination = None
    probability = None
    negate = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok == "!":
            negate = True
            i += 1
            continue
        if tok in ("-j", "--jump"):
            target = tokens[i + 1]
            i += 2
        elif tok == "--to-destination":
            to_destination = tokens[i + 1]
            i += 2
        elif tok == "--probability":
            probability = float(tokens[i + 1])
            i += 2
        elif tok == "--rcheck":
            matches.append((tok, negate, ""))
            i += 1
        elif tok in _MATCHES:
            matches.append((tok, negate, tokens[i + 1]))
            i += 2
        elif tok in _IGNORED_WITH_VALUE:
            i += 2
        elif tok in _IGNORED_FLAGS:
            i += 1
        else:
            raise ValueError(f"tracer does not understand {tok!r} in: -A {chain} {spec}")
        negate = False
    return _Rule(chain, tuple(matches), target, to_destination, probability)
