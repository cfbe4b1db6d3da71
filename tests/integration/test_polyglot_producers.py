"""Producers written in Java and Go feed the gate as the Python SDK does (CONTRACT §1).

``examples/java-producer`` (kafka-clients, Apicurio's Avro serde in Confluent-compatible mode) and
``examples/go-producer`` (franz-go, hamba/avro) are built and run against isolated topics; the gate
must decide every share and training read as their scenario says, with not one dead letter: a
producer that partitions other than murmur2(key) gets ``MISROUTED``, one whose wire format or schema
is off gets a decoding error, and either shows up here.

A missing toolchain (java, mvn, go) fails this test: ``deploy/local/install.sh test`` installs them.
Each build runs once per session; Maven's ``~/.m2`` and Go's module cache keep later ones fast.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from streams import topics
from streams.core.partitioning import partition_for
from streams.serde.registry import make_client
from tests.integration.harness import EXAMPLE_POLICY, REPO, GateEnv

pytestmark = [pytest.mark.integration, pytest.mark.slow]

EXAMPLES = REPO / "examples"
BUILD_TIMEOUT_S = 1200
"""A cold build downloads Maven plugins and Go modules on a shared 2-core machine."""
USERS = 6
"""Users per producer run: two of each outcome of the scenario (examples/README.md)."""
EXPECTED = {
    0: ("ALLOW", "CONSENTED"),
    1: ("DENY", "NO_CONSENT"),
    2: ("DENY", "CATEGORY_NOT_CONSENTED"),
}
"""The scenario's verdict for user i, by i % 3."""


@dataclass(frozen=True)
class Producers:
    """The commands that run the built example producers (arguments appended)."""

    java: list[str]
    go: list[str]


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"`{name}` is not on PATH: the polyglot producer test needs java, mvn and go"
            " (run `deploy/local/install.sh test`)"
        )
    return path


def _build(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        command,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=BUILD_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, (
        f"building {cwd.name} failed ({' '.join(command)}):\n{done.stdout[-4000:]}"
        f"\n{done.stderr[-4000:]}"
    )


@pytest.fixture(scope="session")
def producers() -> Iterator[Producers]:
    """Build both example producers once per session."""
    java, mvn, go = _tool("java"), _tool("mvn"), _tool("go")
    java_dir, go_dir = EXAMPLES / "java-producer", EXAMPLES / "go-producer"
    _build([mvn, "-q", "-B", "package", "-DskipTests"], java_dir)
    out = Path(tempfile.mkdtemp(prefix="consentinel-go-producer-"))
    binary = out / "go-producer"
    # GOTOOLCHAIN=local: build with the installed go (1.23 or newer), never fetch another one.
    _build(
        [go, "build", "-o", str(binary), "."], go_dir, env={**os.environ, "GOTOOLCHAIN": "local"}
    )
    yield Producers(
        java=[java, "-jar", str(java_dir / "target" / "java-producer.jar")], go=[str(binary)]
    )
    shutil.rmtree(out, ignore_errors=True)


def _run(command: list[str], env: GateEnv, run: str) -> list[dict[str, Any]]:
    """Run a producer on the environment's topics; return the records it says it wrote."""
    done = subprocess.run(
        [
            *command,
            "--bootstrap",
            env.settings.kafka_bootstrap_servers,
            "--registry",
            env.settings.schema_registry_url,
            "--prefix",
            env.prefix,
            "--run",
            run,
            "--users",
            str(USERS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{command[0]} failed:\n{done.stdout}\n{done.stderr[-4000:]}"
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _expected(run: str, written: list[dict[str, Any]]) -> dict[str, tuple[str, str]]:
    """The verdict and reason the scenario expects for each share and read the run wrote."""
    expected = {}
    for record in written:
        if record["kind"] in ("share", "read"):
            user = int(record["key"].removeprefix(f"{run}-u"))
            expected[record["event_id"]] = EXPECTED[user % 3]
    return expected


def test_java_and_go_producers_are_decided_with_no_dead_letter(
    gate_env: GateEnv, producers: Producers, unique: str
) -> None:
    env = gate_env
    runs = {f"java-{unique}": producers.java, f"go-{unique}": producers.go}
    written = {run: _run(command, env, run) for run, command in runs.items()}

    expected: dict[str, tuple[str, str]] = {}
    for run, records in written.items():
        kinds = Counter(r["kind"] for r in records)
        assert kinds == {"upload": USERS, "consent": 4, "share": USERS, "read": USERS}, run
        expected.update(_expected(run, records))

    # The values are in the Confluent wire format with the id registered for <topic>-value.
    registry = make_client(env.settings.schema_registry_url, credentials=None)
    for logical in sorted(topics.INPUT_TOPICS):
        schema_id = registry.get_latest_version(f"{env.topic(logical)}-value").schema_id
        count = sum(r["topic"] == logical for records in written.values() for r in records)
        raw = env.read(logical, until=lambda found, n=count: len(found) >= n, decode=False)
        assert len(raw) == count, logical
        assert {(value[0], int.from_bytes(value[1:5], "big")) for value in raw} == {
            (0, schema_id)
        }, logical

    allowed_shares = sorted(
        event_id
        for event_id, (verdict, _) in expected.items()
        if verdict == "ALLOW" and "-share-" in event_id
    )
    with env.gate_thread(policy=EXAMPLE_POLICY):
        decisions = env.read(
            topics.TOPIC_DECISIONS, until=lambda found: len(found) >= len(expected), timeout_s=180
        )
        dead = env.read_exactly(topics.TOPIC_DLQ, 0, timeout_s=30)
        assert [(d["source_topic"], d["error_kind"], d["error"]) for d in dead] == []
        approved = env.read_exactly(topics.TOPIC_SHARE_APPROVED, len(allowed_shares))

    for run, records in written.items():  # each client put each record where murmur2 puts it
        for r in records:
            assert r["partition"] == partition_for(r["key"].encode(), env.partitions), (run, r)
    got = {d["subject_event_id"]: (d["verdict"], d["reason"]) for d in decisions}
    assert got == expected
    assert len(decisions) == len(expected)
    assert len(allowed_shares) == 4  # two consenting users per run
    assert sorted(a["event_id"] for a in approved) == allowed_shares
