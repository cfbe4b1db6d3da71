"""Transient is not poison (the trust issue, §4): outages are retried, bad controls fail closed.

- The schema registry goes away while the gate has inputs whose schemas it has not seen: the
  batch is retried with back-off, nothing is dead-lettered, and once the registry is back every
  input is decided as it would have been.
- An unreadable control goes to the DLQ, holds its recipient and keeps the gate not ready until a
  readable control for that recipient replaces it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid

import pytest
from prometheus_client import REGISTRY

from streams import topics
from tests.integration.harness import GateEnv, content_hash
from tests.support import wait_until

pytestmark = pytest.mark.integration


class CuttableProxy:
    """A TCP proxy to the registry on a local port, that can refuse connections for a while."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        self.port = probe.getsockname()[1]
        probe.close()
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/apis/ccompat/v7"

    def up(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """Refuse new connections and drop the open ones (the registry is unreachable)."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread (Linux)
            listener.close()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
                connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._connections += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


def _story(env: GateEnv, now: int) -> str:
    tag = uuid.uuid4().hex[:8]
    owner, photo = f"u-{tag}", f"p-{tag}"
    env.producer.photo_uploaded(
        photo_id=photo,
        owner_id=owner,
        content_sha256=content_hash(photo),
        media_type="image/jpeg",
        size_bytes=1,
        occurred_at=now - 30_000,
    )
    env.producer.consent_changed(
        user_id=owner,
        purpose="ML_TRAINING",
        granted=True,
        notice_version="n1",
        categories=["IMAGE"],
        occurred_at=now - 20_000,
    )
    env.producer.flush()  # the gate may be live: upload and consent before the read
    event_id = env.producer.training_read(
        job_id="job-1",
        model_id="model-1",
        org="acme-vision",
        photo_id=photo,
        owner_id=owner,
        categories=["IMAGE"],
        occurred_at=now,
    )
    env.producer.flush()
    return event_id


def _transient_errors() -> float:
    return REGISTRY.get_sample_value("consentinel_gate_transient_errors_total") or 0.0


def test_a_registry_outage_is_retried_never_dead_lettered(gate_env: GateEnv) -> None:
    env = gate_env
    host, port = "127.0.0.1", int(env.settings.schema_registry_url.split(":")[2].split("/")[0])
    proxy = CuttableProxy((host, port))
    proxy.up()
    before = _transient_errors()
    with env.gate_thread(registry_url=proxy.url) as runner:
        wait_until(lambda: runner.ready, 60, "the gate to be ready")
        proxy.cut()
        event_id = _story(env, int(time.time() * 1000))
        wait_until(lambda: _transient_errors() > before, 30, "the gate to meet the outage")
        time.sleep(2)
        assert env.read(topics.TOPIC_DLQ, until=lambda _: False, timeout_s=2) == []
        assert env.read(topics.TOPIC_DECISIONS, until=lambda _: False, timeout_s=1) == []
        proxy.up()
        decisions = env.read_exactly(topics.TOPIC_DECISIONS, 1, timeout_s=60)
        assert env.assert_approved() == []  # training reads: nothing to approve
    assert [(d["subject_event_id"], d["verdict"]) for d in decisions] == [(event_id, "ALLOW")], (
        f"reasons: {[d['reason'] for d in decisions]}"
    )
    assert env.read(topics.TOPIC_DLQ, until=lambda _: False, timeout_s=2) == []
    proxy.cut()


def test_an_unreadable_control_holds_its_recipient_and_the_gate_is_not_ready(
    gate_env: GateEnv,
) -> None:
    env = gate_env
    env.produce_raw(topics.TOPIC_CONTROLS, b"acme-vision", b"garbage, not a control", partition=0)
    with env.gate_thread() as runner:
        dead = env.read_exactly(topics.TOPIC_DLQ, 1)
        assert [(d["source_topic"], d["key"]) for d in dead] == [
            (topics.TOPIC_CONTROLS, b"acme-vision")
        ]
        time.sleep(1)
        assert not runner.ready, "a gate with an unreadable control must not be ready"
        held = _story(env, int(time.time() * 1000))
        first = env.read_exactly(topics.TOPIC_DECISIONS, 1)
        assert [(d["subject_event_id"], d["verdict"]) for d in first] == [(held, "HOLD")]
        env.producer.produce(
            env.topic(topics.TOPIC_CONTROLS),
            "acme-vision",
            {
                "control_id": "c-fix",
                "at": int(time.time() * 1000),
                "kind": "RESUME_RECIPIENT",
                "recipient_org": "acme-vision",
                "reason": "the unreadable control was written again",
                "actor": "it",
            },
        )
        env.producer.flush()
        wait_until(lambda: runner.ready, 30, "the gate to be ready again")
        allowed = _story(env, int(time.time() * 1000))
        both = env.read_exactly(topics.TOPIC_DECISIONS, 2)
        assert env.assert_approved() == []  # training reads: nothing to approve
    later = next(d for d in both if d["subject_event_id"] == allowed)
    assert (later["verdict"], later["reason"]) == ("ALLOW", "CONSENTED"), later["explanation"]
