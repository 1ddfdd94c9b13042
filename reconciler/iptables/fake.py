"""A validating in-memory iptables for unit tests: applies restore input as the kernel would.

It rejects what iptables-restore rejects (rules in or jumps to missing chains, deleting a
chain that is missing, non-empty or still referenced) with a RestoreError naming the input
line, and commits table by table, as iptables-restore does.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable

from reconciler.errors import RestoreError
from reconciler.iptables.dump import BUILTIN_CHAINS, STANDARD_TARGETS, Table


class FakeIptables:
    """Implements the IptablesBackend protocol in memory."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = {
            name: Table(name, {c: [] for c in chains}) for name, chains in BUILTIN_CHAINS.items()
        }
        self.restores: list[str] = []
        self.saves = 0
        self.fail_next: str | None = None

    def restore(self, data: bytes) -> None:
        text = data.decode()
        self.restores.append(text)
        if self.fail_next is not None:
            message, self.fail_next = self.fail_next, None
            raise RestoreError(message)
        working: Table | None = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                working = self._apply_line(working, line)
            except ValueError as exc:
                raise RestoreError(f"iptables-restore (fake): {exc}", number, line) from None
        if working is not None:
            raise RestoreError("iptables-restore (fake): missing COMMIT")

    def _apply_line(self, working: Table | None, line: str) -> Table | None:
        if line.startswith("*"):
            if working is not None:
                raise ValueError("table started before COMMIT")
            name = line[1:]
            if name not in self.tables:
                raise ValueError(f"unknown table {name!r}")
            return self.tables[name].copy()
        if working is None:
            raise ValueError("line outside a table")
        if line == "COMMIT":
            self.tables[working.name] = working
            return None
        if line.startswith(":"):
            chain, policy = line[1:].split()[:2]
            builtin = chain in BUILTIN_CHAINS[working.name]
            if builtin != (policy != "-"):
                raise ValueError(f"bad policy {policy!r} for chain {chain}")
            if not builtin:
                working.chains[chain] = []  # --noflush still flushes declared chains
            return working
        tokens = shlex.split(line)
        op, chain = tokens[0], tokens[1]
        if op == "-X":
            if chain not in working.chains or chain in BUILTIN_CHAINS[working.name]:
                raise ValueError(f"chain {chain} does not exist")
            if working.chains[chain]:
                raise ValueError(f"chain {chain} is not empty")
            for other, rules in working.chains.items():
                if any(_target(shlex.split(r)) == chain for r in rules):
                    raise ValueError(f"chain {chain} is still referenced from {other}")
            del working.chains[chain]
            return working
        if op not in ("-A", "-I"):
            raise ValueError(f"unsupported command {op}")
        if chain not in working.chains:
            raise ValueError(f"chain {chain} does not exist")
        rest = tokens[2:]
        position = None
        if op == "-I" and rest and rest[0].isdigit():
            position = int(rest[0]) - 1
            rest = rest[1:]
        target = _target(rest)
        if target is None:
            pass
        elif target not in STANDARD_TARGETS and target not in working.chains:
            raise ValueError(f"Couldn't load target `{target}'")
        spec = line.split(" ", 3 if position is not None else 2)[-1]
        if position is None and op == "-A":
            working.chains[chain].append(spec)
        else:
            working.chains[chain].insert(position or 0, spec)
        return working

    def begin_save(self) -> Callable[[], str]:
        text = self.save("filter") + self.save("nat")
        return lambda: text

    def save(self, table: str) -> str:
        self.saves += 1
        t = self.tables[table]
        lines = [f"*{table}"]
        for chain in t.chains:
            policy = "ACCEPT" if chain in BUILTIN_CHAINS[table] else "-"
            lines.append(f":{chain} {policy} [0:0]")
        for chain, rules in t.chains.items():
            lines.extend(f"-A {chain} {r}" for r in rules)
        lines.append("COMMIT")
        return "\n".join(lines) + "\n"


def _target(tokens: list[str]) -> str | None:
    for i, tok in enumerate(tokens[:-1]):
        if tok in ("-j", "--jump"):
            return tokens[i + 1]
    return None
