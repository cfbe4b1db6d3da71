"""Helpers of the alert-delivery tests: a webhook receiver and the Alertmanager under test.

Used by tests/deploy/test_alert_delivery.py (metrics from a tiny exporter) and by
tests/observability/test_live.py (metrics from a real gate and detector fed by a simulated bulk
export).
"""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from streams.stack import alertmanager

REPO = Path(__file__).resolve().parents[2]
AM_CONFIG = REPO / "deploy" / "alertmanager" / "alertmanager.yml"
RUNBOOK_BASE = "https://runbooks.example.test/consentinel/docs/runbook.md"
"""The CONSENTINEL_RUNBOOK_BASE_URL the tests give Prometheus."""


class HttpServer:
    """A threaded local HTTP server: GET serves ``body``; POSTed JSON bodies land in ``posts``."""

    def __init__(self, body: bytes = b"") -> None:
        self.posts: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                outer.posts.append(json.loads(self.rfile.read(length)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.httpd.server_address[1])
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """The URL alerts are posted to."""
        return f"http://127.0.0.1:{self.port}/alerts"

    def alerts(self, alertname: str) -> list[dict[str, Any]]:
        """Every alert named ``alertname`` received so far."""
        return [
            alert
            for post in self.posts
            for alert in post.get("alerts", [])
            if alert["labels"].get("alertname") == alertname
        ]

    def close(self) -> None:
        """Stop serving."""
        self.httpd.shutdown()
        self.httpd.server_close()


def start_alertmanager(
    work: Path, port: int, receiver_url: str, log: Path
) -> subprocess.Popen[bytes]:
    """Start Alertmanager with the project's routing, its receiver pointed at ``receiver_url``."""
    exe = alertmanager.binary()
    assert exe is not None, (
        "Debian's prometheus-alertmanager is not installed (`apt-get install "
        "prometheus-alertmanager`; .ci/run does)"
    )
    doc = yaml.safe_load(AM_CONFIG.read_text())
    (receiver,) = [r for r in doc["receivers"] if r["name"] == doc["route"]["receiver"]]
    receiver["webhook_configs"][0]["url"] = receiver_url
    config = work / "alertmanager.yml"
    config.write_text(yaml.safe_dump(doc))
    return subprocess.Popen(
        alertmanager.alertmanager_command(exe, config, work / "alertmanager-data", port),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
    )
