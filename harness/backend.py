"""HTTP backends for many pods in one asyncio process: each listening socket is opened inside
its pod's network namespace (setns), then served by the same event loop. Answers every
request with the pod's name, so a client can tell which pod it reached."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import socket

CLONE_NEWNET = 0x40000000
BACKEND_PORT = 8080
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listen_in_netns(netns_path: str, port: int) -> socket.socket:
    """A listening TCP socket that lives in another network namespace."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(netns_path, os.O_RDONLY)
    try:
        _setns(target)
        try:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("0.0.0.0", port))
            sock.listen(512)
            sock.setblocking(False)
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)
    return sock


class PodBackends:
    """Start and stop a pod's server; connections in flight finish unless the pod is killed."""

    def __init__(self) -> None:
        self._servers: dict[str, asyncio.Server] = {}
        self.served: dict[str, int] = {}

    async def start(self, pod_name: str, netns_path: str, port: int = BACKEND_PORT) -> None:
        sock = listen_in_netns(netns_path, port)
        body = pod_name.encode()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    close = b"connection: close" in head.lower() or head.startswith(
                        b"GET / HTTP/1.0"
                    )
                    writer.write(
                        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s"
                        % (len(body), b"Connection: close\r\n" if close else b"", body)
                    )
                    await writer.drain()
                    self.served[pod_name] = self.served.get(pod_name, 0) + 1
                    if close:
                        break
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
                pass
            finally:
                writer.close()
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()

        self._servers[pod_name] = await asyncio.start_server(handle, sock=sock)

    async def stop(self, pod_name: str) -> None:
        server = self._servers.pop(pod_name, None)
        if server is not None:
            server.close()
            await server.wait_closed()

    async def stop_all(self) -> None:
        for name in list(self._servers):
            await self.stop(name)
