"""One small HTTP server per process: ``/metrics`` (Prometheus), ``/ready`` and ``/live``.

``/ready`` answers 200 only while the process's readiness check returns true (the gate: every
assigned partition's state restored and the controls read), 503 otherwise, so an orchestrator or a
load test never counts a process that would fail closed on everything as serving.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from streams.errors import ConfigError


class HealthServer:
    """Serves metrics and health on ``port`` (0 picks a free port) in a daemon thread."""

    def __init__(
        self,
        port: int,
        is_ready: Callable[[], bool],
        *,
        is_live: Callable[[], bool] = lambda: True,
        registry: CollectorRegistry = REGISTRY,
        host: str = "0.0.0.0",
    ) -> None:
        handler = _handler(is_ready, is_live, registry)
        try:
            self._server = ThreadingHTTPServer((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror}",
                hint="choose a free METRICS_PORT",
            ) from exc
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="health-http", daemon=True
        )

    def start(self) -> HealthServer:
        """Start serving; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def _handler(
    is_ready: Callable[[], bool], is_live: Callable[[], bool], registry: CollectorRegistry
) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._reply(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/ready":
                ready = is_ready()
                self._reply(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
            elif path == "/live":
                live = is_live()
                self._reply(200 if live else 503, b"live\n" if live else b"stalled\n")
            else:
                self._reply(404, b"not found: try /metrics, /ready or /live\n")

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # scrapes every few seconds would flood the log

    return Handler
