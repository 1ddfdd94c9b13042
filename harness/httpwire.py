"""The client side of our backends' HTTP/1.1, shared by the smoke client and the locust load
generator: requests, one response off a socket, and the failure kinds the results count.

Pure socket code with no locust import, so tests (and the pytest process) can use it without
gevent's monkey-patching."""

from __future__ import annotations

import socket

REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: kpbench\r\nConnection: close\r\n\r\n"
REQUEST_KEEP = b"GET / HTTP/1.1\r\nHost: kpbench\r\n\r\n"


class BadResponse(Exception):
    """The peer answered something that is not our backends' 200 reply."""


def failure_kind(exc: BaseException) -> str:
    """The outcome recorded for a failed request."""
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timeout"
    if isinstance(exc, BadResponse):
        return "bad-response"
    return "other"


def read_response(sock: socket.socket, buffer: bytearray) -> str:
    """One HTTP/1.1 response with a Content-Length; returns its body (the pod's name).
    Bytes past it stay in `buffer` for the next response on a kept-alive connection."""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed before a response")
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 200"):
        raise BadResponse(head[:40].decode(errors="replace"))
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("connection closed mid-body")
        rest += chunk
    buffer[:] = rest[length:]
    return rest[:length].decode()


def one_request(host: str, port: int, timeout: float) -> str:
    """A request on a new connection; the answering backend's name. Raises OSError
    subclasses or BadResponse on failure."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(REQUEST_CLOSE)
        return read_response(sock, bytearray())
