"""A small IPVS generic-netlink client that batches: many messages per socket write.

pyroute2's IPVS class runs one request (and an event loop) per call, which measured ~5.6x
slower than `ipvsadm -R` for bulk loads. Here messages are packed with struct, sent in
chunks of up to CHUNK_BYTES, and only the last message of a chunk asks for an ACK: the
kernel processes a chunk synchronously inside the send, and reports every failure anyway.
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from collections.abc import Iterator, Sequence
from typing import NamedTuple

from reconciler.errors import ApplyError
from reconciler.ipvs.diff import Op
from reconciler.ipvs.model import (
    FLAG_PERSISTENT,
    FWD_MASQ,
    PROTOCOL_NAMES,
    PROTOCOL_NUMBERS,
    IpvsTable,
    RealServer,
    ServiceKey,
    VirtualServer,
)

NETLINK_GENERIC = 16
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLA_F_NESTED = 0x8000
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
CMD = {
    "add_service": 1,
    "set_service": 2,
    "del_service": 3,
    "get_service": 4,
    "add_dest": 5,
    "set_dest": 6,
    "del_dest": 7,
    "get_dest": 8,
    "flush": 17,
}
ATTR_SERVICE, ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_SCHED, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = (
    1,
    2,
    3,
    4,
    6,
    7,
    8,
    9,
)
DEST_ADDR, DEST_PORT, DEST_FWD, DEST_WEIGHT, DEST_UTHRESH, DEST_LTHRESH = 1, 2, 3, 4, 5, 6
DEST_ACTIVE, DEST_INACTIVE, DEST_FAMILY = 7, 8, 11
CHUNK_BYTES = 64 * 1024
_HDR = struct.Struct("=IHHII")  # nlmsghdr
_GENL = struct.Struct("=BBH")


class IpvsUnavailable(ApplyError):
    """This kernel has no IPVS (no ip_vs module / generic netlink family)."""


class DestInfo(NamedTuple):
    weight: int
    active: int
    inactive: int


def _attr(kind: int, payload: bytes) -> bytes:
    length = 4 + len(payload)
    return struct.pack("=HH", length, kind) + payload + b"\0" * (-length % 4)


def _addr(ip: str) -> bytes:
    return socket.inet_aton(ip) + b"\0" * 12  # union nf_inet_addr


def _service_attrs(vs: VirtualServer | ServiceKey, full: bool) -> bytes:
    key = vs.key if isinstance(vs, VirtualServer) else vs
    body = (
        _attr(SVC_AF, struct.pack("=H", socket.AF_INET))
        + _attr(SVC_PROTOCOL, struct.pack("=H", PROTOCOL_NUMBERS[key.protocol]))
        + _attr(SVC_ADDR, _addr(key.ip))
        + _attr(SVC_PORT, struct.pack("!H", key.port))
    )
    if full and isinstance(vs, VirtualServer):
        flags = FLAG_PERSISTENT if vs.timeout else 0
        body += (
            _attr(SVC_SCHED, vs.scheduler.encode() + b"\0")
            + _attr(SVC_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF))
            + _attr(SVC_TIMEOUT, struct.pack("=I", vs.timeout))
            + _attr(SVC_NETMASK, struct.pack("=I", 0xFFFFFFFF))
        )
    return _attr(ATTR_SERVICE | NLA_F_NESTED, body)


def _dest_attrs(rs: RealServer, weight: int, full: bool) -> bytes:
    body = _attr(DEST_ADDR, _addr(rs.ip)) + _attr(DEST_PORT, struct.pack("!H", rs.port))
    if full:
        body += (
            _attr(DEST_FWD, struct.pack("=I", FWD_MASQ))
            + _attr(DEST_WEIGHT, struct.pack("=i", weight))
            + _attr(DEST_UTHRESH, struct.pack("=I", 0))
            + _attr(DEST_LTHRESH, struct.pack("=I", 0))
            + _attr(DEST_FAMILY, struct.pack("=H", socket.AF_INET))
        )
    return _attr(ATTR_DEST | NLA_F_NESTED, body)


def encode_op(op: Op) -> tuple[int, bytes]:
    """(command, attributes) of one operation."""
    if op.kind in ("add_service", "set_service"):
        return CMD[op.kind], _service_attrs(op.service, True)
    if op.kind == "del_service":
        return CMD[op.kind], _service_attrs(op.service.key, False)
    assert op.dest is not None
    full = op.kind != "del_dest"
    return CMD[op.kind], _service_attrs(op.service.key, False) + _dest_attrs(
        op.dest, op.weight, full
    )


def _parse_attrs(data: bytes) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4:
            break
        yield kind & 0x3FFF, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


class IpvsNetlink:
    """A generic netlink socket to the IPVS family of the current network namespace."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_GENERIC)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.bind((0, 0))
        self.pid = self.sock.getsockname()[0]
        self.seq = 0
        self.messages_sent = 0
        self.sends = 0
        self.family = self._resolve_family()

    def close(self) -> None:
        self.sock.close()

    def _message(self, family: int, cmd: int, attrs: bytes, flags: int) -> bytes:
        self.seq += 1
        body = _GENL.pack(cmd, 1, 0) + attrs
        return _HDR.pack(_HDR.size + len(body), family, flags, self.seq, self.pid) + body

    def _resolve_family(self) -> int:
        msg = self._message(
            GENL_ID_CTRL, CTRL_CMD_GETFAMILY, _attr(CTRL_ATTR_FAMILY_NAME, b"IPVS\0"), NLM_F_REQUEST
        )
        self.sock.send(msg)
        for kind, payload, _ in self._read_until(self.seq, dump=False):
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code == errno.ENOENT:
                    raise IpvsUnavailable(
                        "this kernel has no IPVS (modprobe ip_vs, or use the uml node)"
                    )
                raise ApplyError(f"resolving the IPVS netlink family: {os.strerror(code)}")
            for attr, value in _parse_attrs(payload[_GENL.size :]):
                if attr == CTRL_ATTR_FAMILY_ID:
                    return int(struct.unpack_from("=H", value)[0])
        raise ApplyError("the kernel did not return the IPVS netlink family id")

    def _read_until(self, last_seq: int, dump: bool) -> Iterator[tuple[int, bytes, int]]:
        """(type, payload, seq) of replies until the ACK of `last_seq` (or DONE of a dump)."""
        while True:
            data = self.sock.recv(1 << 20)
            offset = 0
            while offset + _HDR.size <= len(data):
                length, kind, _, seq, _ = _HDR.unpack_from(data, offset)
                payload = data[offset + _HDR.size : offset + length]
                offset += (length + 3) & ~3
                if kind == NLMSG_DONE and dump:
                    return
                yield kind, payload, seq
                if kind == NLMSG_ERROR and seq == last_seq and not dump:
                    return
                if kind != NLMSG_ERROR and not dump:
                    return

    def apply(self, ops: Sequence[Op]) -> None:
        """Send all operations, many per write; raise ApplyError naming the first that failed."""
        if not ops:
            return
        failures: list[tuple[int, int]] = []
        chunk: list[bytes] = []
        size = 0
        first_seq = self.seq + 1
        for i, op in enumerate(ops):
            cmd, attrs = encode_op(op)
            last = i == len(ops) - 1 or size + 200 > CHUNK_BYTES
            chunk.append(
                self._message(self.family, cmd, attrs, NLM_F_REQUEST | (NLM_F_ACK if last else 0))
            )
            size += len(chunk[-1])
            if last:
                self.sock.send(b"".join(chunk))
                self.sends += 1
                self.messages_sent += len(chunk)
                for kind, payload, seq in self._read_until(self.seq, dump=False):
                    code = -struct.unpack_from("=i", payload)[0] if kind == NLMSG_ERROR else 0
                    if code:
                        failures.append((seq, code))
                chunk, size = [], 0
        if failures:
            seq, code = failures[0]
            op = ops[seq - first_seq]
            raise ApplyError(
                f"IPVS {op.describe()} failed: {os.strerror(code)}"
                + (f" (and {len(failures) - 1} more)" if len(failures) > 1 else "")
            )

    def _dump(self, cmd: int, attrs: bytes) -> Iterator[bytes]:
        self.sock.send(self._message(self.family, cmd, attrs, NLM_F_REQUEST | NLM_F_DUMP))
        for kind, payload, _ in self._read_until(self.seq, dump=True):
            if kind == NLMSG_ERROR:
                code = -struct.unpack_from("=i", payload)[0]
                if code:
                    raise ApplyError(f"IPVS dump failed: {os.strerror(code)}")
                continue
            yield payload[_GENL.size :]

    def services(self) -> list[VirtualServer]:
        out = []
        for payload in self._dump(CMD["get_service"], b""):
            for attr, nested in _parse_attrs(payload):
                if attr != ATTR_SERVICE:
                    continue
                fields = dict(_parse_attrs(nested))
                if (
                    SVC_ADDR not in fields
                    or struct.unpack("=H", fields[SVC_AF])[0] != socket.AF_INET
                ):
                    continue
                flags = struct.unpack_from("=I", fields.get(SVC_FLAGS, b"\0" * 8))[0]
                timeout = (
                    struct.unpack("=I", fields[SVC_TIMEOUT])[0] if flags & FLAG_PERSISTENT else 0
                )
                key = ServiceKey(
                    PROTOCOL_NAMES.get(struct.unpack("=H", fields[SVC_PROTOCOL])[0], "TCP"),
                    socket.inet_ntoa(fields[SVC_ADDR][:4]),
                    struct.unpack("!H", fields[SVC_PORT])[0],
                )
                out.append(VirtualServer(key, fields[SVC_SCHED].rstrip(b"\0").decode(), timeout))
        return out

    def destinations(self, key: ServiceKey) -> dict[RealServer, DestInfo]:
        out = {}
        for payload in self._dump(CMD["get_dest"], _service_attrs(key, False)):
            for attr, nested in _parse_attrs(payload):
                if attr != ATTR_DEST:
                    continue
                fields = dict(_parse_attrs(nested))
                rs = RealServer(
                    socket.inet_ntoa(fields[DEST_ADDR][:4]),
                    struct.unpack("!H", fields[DEST_PORT])[0],
                )
                out[rs] = DestInfo(
                    struct.unpack("=i", fields[DEST_WEIGHT])[0],
                    struct.unpack("=I", fields.get(DEST_ACTIVE, b"\0\0\0\0"))[0],
                    struct.unpack("=I", fields.get(DEST_INACTIVE, b"\0\0\0\0"))[0],
                )
        return out

    def table(self) -> IpvsTable:
        """The whole kernel table (a full sync's view): one dump per virtual server."""
        table = IpvsTable.empty()
        for vs in self.services():
            table.services[vs.key] = vs
            table.destinations[vs.key] = {
                rs: d.weight for rs, d in self.destinations(vs.key).items()
            }
        return table
