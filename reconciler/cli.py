"""Command line: `render` prints a sync's iptables-restore input, `run` applies it to the kernel."""

from __future__ import annotations

import argparse
import ipaddress
import re
import sys
from pathlib import Path

from reconciler.errors import LogLineError, ReconcilerError
from reconciler.iptables.kernel import KernelIptables, set_sysctl
from reconciler.iptables.proxier import IptablesProxier
from reconciler.iptables.render import IptablesConfig, render
from reconciler.ipvs.kernel import KernelIpvs
from reconciler.ipvs.proxier import IpvsProxier
from reconciler.ipvs.render import (
    KNOWN_SCHEDULERS,
    Aggregate,
    Delta,
    IpvsConfig,
    ipset_save,
    iptables_rules,
    ipvsadm_save,
    port_state,
)
from reconciler.logreader import LogReader
from reconciler.metrics import MetricsWriter
from reconciler.runner import Proxier, RunnerConfig, StopFlag, follow, run_once
from reconciler.state import ClusterState

EXIT_BAD_INPUT = 2
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def duration(text: str) -> float:
    """'1s', '500ms', '2m' or a bare number of seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"invalid duration {text!r} (use e.g. 1s, 500ms, 2m)")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def cidr(text: str) -> str:
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid CIDR {text!r}") from None


def ip(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid IP address {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m reconciler",
        description="Replay Service/EndpointSlice watch events into kernel rules as kube-proxy would.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--log", type=Path, required=True, help="event log (JSON Lines watch events)"
    )
    common.add_argument("--mode", choices=["iptables", "ipvs"], default="iptables")
    common.add_argument(
        "--cluster-cidr",
        type=cidr,
        help="pod CIDR: traffic to a ClusterIP from outside it is masqueraded",
    )
    common.add_argument(
        "--masquerade-all", action="store_true", help="masquerade all traffic to ClusterIPs"
    )
    common.add_argument(
        "--hostname-override", default="", help="this node's name, for traffic policy Local"
    )
    common.add_argument(
        "--node-ip", type=ip, action="append", default=[], help="this node's address (repeatable)"
    )
    common.add_argument(
        "--no-localhost-nodeports",
        action="store_true",
        help="kube-proxy's iptables.localhostNodePorts=false",
    )
    common.add_argument(
        "--skip-invalid", action="store_true", help="report bad lines and go on instead of stopping"
    )
    common.add_argument(
        "--ipvs-scheduler", default="rr", help="IPVS scheduler in ipvs mode (default rr)"
    )

    sub.add_parser(
        "render", parents=[common], help="print the iptables-restore input of a full sync"
    )
    run = sub.add_parser(
        "run", parents=[common], help="apply the log to this network namespace's kernel"
    )
    how = run.add_mutually_exclusive_group(required=True)
    how.add_argument(
        "--once", action="store_true", help="one full sync of the whole log, then exit"
    )
    how.add_argument("--follow", action="store_true", help="tail the log and sync as it grows")
    run.add_argument(
        "--min-sync-period", type=duration, default=1.0, help="batch events this long (default 1s)"
    )
    run.add_argument(
        "--sync-period", type=duration, default=30.0, help="full sync this often (default 30s)"
    )
    run.add_argument("--metrics", type=Path, help="append one JSON object per sync to this file")
    run.add_argument(
        "--iptables",
        choices=["legacy", "nft"],
        help="iptables backend (default: what `iptables` uses)",
    )
    return parser


def _config(args: argparse.Namespace) -> IptablesConfig:
    return IptablesConfig(
        cluster_cidr=args.cluster_cidr,
        masquerade_all=args.masquerade_all,
        localhost_nodeports=not args.no_localhost_nodeports,
        node_ips=tuple(args.node_ip),
    )


def _report(error: LogLineError) -> None:
    print(error, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.mode == "ipvs" and args.ipvs_scheduler not in KNOWN_SCHEDULERS:
        print(
            f"error: unknown --ipvs-scheduler {args.ipvs_scheduler!r}"
            f" (one of {', '.join(KNOWN_SCHEDULERS)})",
            file=sys.stderr,
        )
        return EXIT_BAD_INPUT
    try:
        reader = LogReader(args.log, skip_invalid=args.skip_invalid, report=_report)
        try:
            if args.command == "render":
                return _render(args, reader)
            return _run(args, reader)
        finally:
            reader.close()
    except LogLineError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    except ReconcilerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _ipvs_config(args: argparse.Namespace) -> IpvsConfig:
    return IpvsConfig(
        cluster_cidr=args.cluster_cidr,
        masquerade_all=args.masquerade_all,
        scheduler=args.ipvs_scheduler,
    )


def _render(args: argparse.Namespace, reader: LogReader) -> int:
    state = ClusterState(node_name=args.hostname_override)
    state.apply_all(reader.read_available(at_eof=True))
    state.drain()
    if args.mode == "iptables":
        sys.stdout.write(render(state, _config(args)).text)
        return 0
    config = _ipvs_config(args)
    aggregate, delta = Aggregate(), Delta()
    for sp in state.sorted_service_ports():
        aggregate.replace(None, port_state(sp, state.endpoints.get(sp.name, ()), config), delta)
    sets = aggregate.ipset_entries()
    sys.stdout.write("# ipvsadm -S -n\n" + ipvsadm_save(aggregate.table))
    sys.stdout.write("# ipset save\n" + ipset_save(sets))
    sys.stdout.write(
        "# iptables-restore\n" + iptables_rules({n for n, e in sets.items() if e}, config)
    )
    return 0


def _run(args: argparse.Namespace, reader: LogReader) -> int:
    state = ClusterState(node_name=args.hostname_override)
    proxier: Proxier
    if args.mode == "ipvs":
        proxier = IpvsProxier(state, KernelIpvs(args.iptables), _ipvs_config(args))
    else:
        config = _config(args)
        proxier = IptablesProxier(state, KernelIptables(args.iptables), config)
        if config.localhost_nodeports:
            # kube-proxy sets route_localnet so NodePorts answer on 127.0.0.1 (this netns only).
            set_sysctl("net.ipv4.conf.all.route_localnet", "1")
    metrics = MetricsWriter(args.metrics)
    try:
        if args.once:
            run_once(reader, state, proxier, metrics)
        else:
            stop = StopFlag()
            stop.install_signal_handlers()
            follow(
                reader,
                state,
                proxier,
                metrics,
                RunnerConfig(args.min_sync_period, args.sync_period),
                stop,
            )
    finally:
        metrics.close()
    return 0
