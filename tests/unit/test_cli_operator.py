"""The operator's view of `consentinel`: version, help, exit codes, one-line outage errors, logs.

The outage tests point the command at a localhost port nothing listens on (no broker needed) and
check that it ends within 15 s with exit code 3 and exactly one line on stderr, no traceback and
no librdkafka log lines.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from streams import cli, preflight
from streams.observability.logfmt import JsonFormatter

REPO = Path(__file__).resolve().parents[2]


def _unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(*args: str, **env: str) -> tuple[int, str, str, float]:
    full_env = {**os.environ, **env}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=REPO,
        timeout=60,
        check=False,
    )
    return proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        ["topics", "apply"],
        ["schemas", "register"],
        ["audit", "verify"],
        ["report", "decisions"],
        ["report", "user", "u1"],
    ],
    ids=lambda c: " ".join(c),
)
def test_unreachable_is_one_line_and_exit_3(command: list[str]) -> None:
    port = _unused_port()
    code, out, err, took = _run(
        *command,
        KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}",
        SCHEMA_REGISTRY_URL=f"http://localhost:{port}/apis/ccompat/v7",
    )
    assert code == preflight.EXIT_UNREACHABLE, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("consentinel: unreachable: cannot reach")
    assert f"localhost:{port}" in lines[0]
    assert "Traceback" not in err and "rdkafka" not in err
    assert took < 15


def test_registry_down_names_the_registry() -> None:
    code, _, err, _ = _run(
        "schemas", "register", SCHEMA_REGISTRY_URL=f"http://127.0.0.1:{_unused_port()}/x"
    )
    assert code == 3
    assert "schema registry" in err and "SCHEMA_REGISTRY_URL" in err


def test_version_prints_the_package_version() -> None:
    code, out, _, _ = _run("--version")
    assert code == 0
    assert out.strip() == f"consentinel {cli.package_version()}"
    assert cli.package_version() != "unknown"


def test_help_lists_environment_and_exit_codes() -> None:
    code, out, _, _ = _run("--help")
    assert code == 0
    for name, _text in cli.ENVIRONMENT:
        assert name in out
    for must in ("KAFKA_BOOTSTRAP_SERVERS", "SCHEMA_REGISTRY_URL", "CONSENTINEL_LOG_FORMAT"):
        assert must in out
    assert "exit codes:" in out and "cannot be reached" in out


def test_usage_and_config_errors_exit_2() -> None:
    code, _, err, _ = _run("no-such-command")
    assert code == preflight.EXIT_USAGE
    code, _, err, _ = _run("topics", "apply", METRICS_PORT="not-a-port")
    assert code == preflight.EXIT_USAGE
    assert err.strip().count("\n") == 0 and "METRICS_PORT" in err
    code, _, err, _ = _run("stack", "status", CONSENTINEL_LOG_FORMAT="xml")
    assert code == preflight.EXIT_USAGE and "CONSENTINEL_LOG_FORMAT" in err
    code, _, err, _ = _run(
        "schemas", "register", CONSENTINEL_CONNECT_TIMEOUT_S="-1", SCHEMA_REGISTRY_URL="http://x"
    )
    assert code == preflight.EXIT_USAGE and "CONSENTINEL_CONNECT_TIMEOUT_S" in err


def test_json_log_lines_are_json() -> None:
    record = logging.LogRecord("streams.gate", logging.WARNING, "f", 1, "held %s", ("x",), None)
    record.partition = 3
    line = JsonFormatter().format(record)
    doc = json.loads(line)
    assert doc["level"] == "WARNING" and doc["logger"] == "streams.gate"
    assert doc["message"] == "held x" and doc["partition"] == 3
    assert doc["ts"].endswith("+00:00")


def test_json_logs_configured_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from streams.observability.logfmt import configure_logging, log_format

    monkeypatch.setenv("CONSENTINEL_LOG_FORMAT", "JSON")
    root = logging.getLogger()
    saved = list(root.handlers), root.level
    try:
        configure_logging(logging.INFO, log_format())
        assert isinstance(root.handlers[0].formatter, JsonFormatter)
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_offline_actions_are_not_probed() -> None:
    from streams.settings import load_settings

    port = _unused_port()
    settings = load_settings(
        KAFKA_BOOTSTRAP_SERVERS=f"localhost:{port}",
        SCHEMA_REGISTRY_URL=f"http://localhost:{port}/apis/ccompat/v7",
    )
    started = time.monotonic()
    preflight.check("audit", settings, "keygen")
    preflight.check("stack", settings, "status")
    assert time.monotonic() - started < 1
    with pytest.raises(preflight.UnreachableError):
        preflight.check("audit", settings, "verify")
