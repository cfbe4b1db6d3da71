"""A TCP proxy of the project's own, in front of the cluster's proxied listeners.

Clients that bootstrap from :func:`streams.stack.cluster.proxied_bootstrap_servers` reach every
broker through it (the brokers advertise the proxy's ports on that listener). :meth:`cut` is a
network partition as a client sees one: bytes stop flowing both ways and new connections hang,
nothing is reset. :meth:`heal` drops the stalled connections and lets new ones through again.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from types import TracebackType

from streams.stack import cluster


class PartitionableProxy:
    """Forwards ``localhost:PROXY_PORTS[i]`` to ``127.0.0.1:PROXIED_PORTS[i]`` until cut."""

    def __init__(self) -> None:
        self._cut = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []

    def __enter__(self) -> PartitionableProxy:
        for listen, target in zip(cluster.PROXY_PORTS, cluster.PROXIED_PORTS, strict=True):
            server = socket.create_server(("127.0.0.1", listen), reuse_port=True)
            server.settimeout(0.2)
            self._listeners.append(server)
            thread = threading.Thread(
                target=self._accept, args=(server, target), name=f"proxy-{listen}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        for server in self._listeners:
            server.close()
        self._drop_all()

    def cut(self) -> None:
        """Partition the clients from the cluster: nothing crosses from now on."""
        self._cut.set()

    def heal(self) -> None:
        """End the partition: stalled connections are closed, new ones go through."""
        self._drop_all()
        self._cut.clear()

    def _drop_all(self) -> None:
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for client, upstream in pairs:
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self, server: socket.socket, target: int) -> None:
        while not self._stop.is_set():
            try:
                client, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            if self._cut.is_set():  # a new connection during the cut hangs, as on a dead link
                with self._lock:
                    self._pairs.append((client, client))
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", target), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.append((client, upstream))
            threading.Thread(
                target=self._pump, args=(client, upstream), name="proxy-pump", daemon=True
            ).start()

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        selector = selectors.DefaultSelector()
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while not self._stop.is_set():
                if self._cut.is_set():
                    self._stop.wait(0.1)  # hold the bytes: neither side hears anything
                    continue
                for key, _ in selector.select(timeout=0.2):
                    source, sink = key.fileobj, key.data
                    assert isinstance(source, socket.socket)
                    data = source.recv(65536)
                    if not data:
                        return
                    sink.sendall(data)
        except OSError:
            return
        finally:
            selector.close()
            for sock in (client, upstream):
                with contextlib.suppress(OSError):
                    sock.close()
