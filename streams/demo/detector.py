"""The detector as the demo runs it: a ``consentinel detect`` subprocess under a name of its own."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient

from streams.demo.script import DETECTOR_PORT
from streams.settings import Settings


def detector_port() -> int:
    """Return 9465 (the detector's usual metrics port) if it is free, else any free port."""
    for port in (DETECTOR_PORT, 0):
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.bind(("0.0.0.0", port))
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port for the detector's metrics")


class DetectorProcess:
    """``consentinel detect`` in a subprocess, under a name (and so a state) of its own."""

    def __init__(self, settings: Settings, policy_path: Path, tag: str) -> None:
        self.settings = settings
        self.policy_path = policy_path
        self.app_name = f"consentinel-detector-demo-{tag}"
        self.log_path = settings.state_dir.parent / "demo-detector.log"
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the detector subprocess on a free metrics port."""
        self.port = detector_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": self.settings.kafka_bootstrap_servers,
            "SCHEMA_REGISTRY_URL": self.settings.schema_registry_url,
            "CONSENTINEL_TOPIC_PREFIX": self.settings.topic_prefix,
            "METRICS_PORT": str(self.port),
        }
        command = [
            *("consentinel", "detect", "--policy", str(self.policy_path)),
            *("--app-name", self.app_name, "--from-now"),
        ]
        print(
            f"== starting the detector: {' '.join(command)}\n   (metrics and readiness on"
            f" :{self.port}, log in {self.log_path})"
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", *command[1:]],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout_s: float = 120) -> bool:
        """Wait until its ``/ready`` answers; False (with a message) if it does not in time."""
        deadline = time.monotonic() + timeout_s
        while self.process is not None and self.process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=2):
                    return True
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        print(f"!! the detector did not become ready; see {self.log_path}")
        return False

    def stop(self) -> None:
        """Stop it, then delete its consumer group and internal topics (this run's state)."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=30)
        self.process = None
        app_id = self.settings.topic_prefix + self.app_name
        admin = AdminClient(self.settings.kafka_config())
        names = [
            t
            for t in admin.list_topics(timeout=30).topics
            if t.startswith((app_id + ".", app_id + "-"))
        ]
        for future in admin.delete_topics(names, operation_timeout=30).values() if names else ():
            with contextlib.suppress(Exception):  # already gone
                future.result()
        for _ in range(20):  # the group empties once the broker has seen the member leave
            try:
                admin.delete_consumer_groups([app_id], request_timeout=30)[app_id].result()
                break
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                if isinstance(error, KafkaError) and error.code() == KafkaError.GROUP_ID_NOT_FOUND:
                    break
                time.sleep(0.5)
        print(f"== the detector stopped; its state ({len(names)} internal topics) was deleted")
