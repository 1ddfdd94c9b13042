"""Parse iptables-save / iptables-restore text into tables of chains and rules (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field

BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
# Targets that are not chains.
STANDARD_TARGETS = frozenset(
    {"ACCEPT", "DROP", "RETURN", "REJECT", "DNAT", "SNAT", "MASQUERADE", "MARK", "LOG", "CONNMARK"}
)


@dataclass
class Table:
    name: str
    chains: dict[str, list[str]] = field(default_factory=dict)

    def copy(self) -> Table:
        return Table(self.name, {c: list(rules) for c, rules in self.chains.items()})


def parse_save(text: str) -> dict[str, Table]:
    """Tables as iptables-save prints them: {table: Table(chain -> rule specs)}.

    A rule spec is the rule without its leading "-A CHAIN ".
    """
    tables: dict[str, Table] = {}
    current: Table | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("*"):
            current = tables.setdefault(line[1:], Table(line[1:]))
        elif line == "COMMIT":
            current = None
        elif current is None:
            raise ValueError(f"line outside a table: {line!r}")
        elif line.startswith(":"):
            current.chains.setdefault(line[1:].split()[0], [])
        elif line.startswith("-A "):
            chain, _, spec = line[3:].partition(" ")
            current.chains.setdefault(chain, []).append(spec)
    return tables


def chain_names(save_text: str, table: str) -> list[str]:
    """The chains a table has, from iptables-save text (GetChainsFromTable)."""
    names: list[str] = []
    in_table = False
    for line in save_text.splitlines():
        if line.startswith("*"):
            in_table = line[1:].strip() == table
        elif in_table and line.startswith(":"):
            names.append(line[1:].split(" ", 1)[0])
    return names
