"""``consentinel stack up --secure``: a second local broker that enforces the contract's section 6.

It runs beside the plaintext broker of :mod:`streams.stack.local`, with its own data, config and
ports, and shares the schema registry (fine for local use: the registry has no per-principal rules
here). Layout under the stack home::

    secure/server.properties   the broker's config (mode 0600: it holds the admin password)
    secure/data/               its KRaft log directory
    secure/passwords.json      every principal's SCRAM password (mode 0600), generated once

The client listener (``localhost:9094``) takes SASL/SCRAM-SHA-512 only; the broker runs the
``StandardAuthorizer`` with ``allow.everyone.if.no.acl.found=false`` and ``User:admin`` as the only
super user. The admin's SCRAM credential is written into the metadata log when the storage is
formatted; every other principal's is created by ``consentinel acls apply``.

Passwords are printed only by ``consentinel stack credentials PRINCIPAL``; errors from here never
contain one (:func:`scrub`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import secrets
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streams.errors import ConfigError, StackError
from streams.secretfile import refuse_shared_secret_file
from streams.stack.kraft import new_cluster_id

SECURE_KAFKA_PORT = 9094
"""The SASL_PLAINTEXT client listener of the secure broker."""
SECURE_CONTROLLER_PORT = 9096
"""Its KRaft controller listener (9093 is the plaintext broker's, 9095 Alertmanager's)."""
SECURE_NAME = "kafka-secure"
"""The component's name in ``stack up|down|status`` and its pid and log files."""
SCRAM_MECHANISM = "SCRAM-SHA-512"
ADMIN = "admin"
"""The super user: ``topics apply``, ``schemas register``, ``acls apply``; no service runs as it."""
SCRAM_ITERATIONS = 8192
"""PBKDF2 iterations of every SCRAM credential this module writes (Kafka's minimum is 4096)."""

_REDACTED = "***"


def secure_dir(home: Path) -> Path:
    """Return the secure broker's directory under the stack home."""
    return home / "secure"


def passwords_file(home: Path) -> Path:
    """Return the 0600 file that holds every principal's generated SCRAM password."""
    return secure_dir(home) / "passwords.json"


def bootstrap_servers() -> str:
    """Return the secure broker's client address."""
    return f"localhost:{SECURE_KAFKA_PORT}"


def scrub(text: str, secret_values: Iterable[str]) -> str:
    """Return ``text`` with every non-empty value of ``secret_values`` replaced by ``***``."""
    for value in secret_values:
        if value:
            text = text.replace(value, _REDACTED)
    return text


class PasswordStore:
    """Principals' SCRAM passwords in one JSON file, readable by its owner only (mode 0600).

    A password is generated the first time a principal is asked for and never changes afterwards
    (delete the entry, then ``consentinel acls apply``, to rotate one). The file is refused when
    anyone but its owner can read it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        if not self.path.exists():
            return {}
        refuse_shared_secret_file(
            self.path,
            "the --passwords file",
            "Kafka passwords",
            hint=f"run `chmod 600 {self.path}` and rotate the passwords it holds",
        )
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot read the password file {self.path}: {type(exc).__name__}",
                hint="restore it, or delete it together with the secure broker's data "
                "(`consentinel stack down`, then remove the secure/ directory of the stack home)",
            ) from None
        if not isinstance(data, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in data.items()
        ):
            raise ConfigError(f"{self.path} is not a JSON object of principal: password")
        return data

    def get(self, principal: str) -> str | None:
        """Return ``principal``'s password, or None when none was generated yet."""
        return self._load().get(principal)

    def ensure(self, principals: Iterable[str]) -> dict[str, str]:
        """Return the passwords of ``principals``, generating (and saving) the missing ones."""
        data = self._load()
        wanted = list(principals)
        missing = [p for p in wanted if p not in data]
        if missing:
            for principal in missing:
                data[principal] = secrets.token_urlsafe(24)
            self._save(data)
        return {p: data[p] for p in wanted}

    def forget(self, principals: Iterable[str]) -> None:
        """Remove the passwords of ``principals`` (after their SCRAM users were deleted)."""
        data = self._load()
        gone = [p for p in principals if p in data]
        if gone:
            for principal in gone:
                del data[principal]
            self._save(data)

    def values(self) -> list[str]:
        """Return every stored password (for :func:`scrub`)."""
        return list(self._load().values())

    def _save(self, data: dict[str, str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.path)


def scram_bootstrap_argument(user: str, password: str) -> str:
    """Return the ``--add-scram`` value for ``user`` with a pre-salted credential.

    The salted password is derived here (PBKDF2-HMAC-SHA-512, RFC 5802's ``Hi``), so the plain
    password never appears on a command line, where every local user could read it.
    """
    salt = secrets.token_bytes(32)
    salted = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, SCRAM_ITERATIONS)
    return (
        f"{SCRAM_MECHANISM}=[name={user},iterations={SCRAM_ITERATIONS},"
        f'salt="{base64.b64encode(salt).decode()}",'
        f'saltedpassword="{base64.b64encode(salted).decode()}"]'
    )


def client_config(home: Path, principal: str) -> dict[str, Any]:
    """Return librdkafka settings to reach the secure broker as ``principal``.

    Raises:
        ConfigError: the principal has no password yet (``acls apply`` creates them).
    """
    password = PasswordStore(passwords_file(home)).get(principal)
    if password is None:
        raise ConfigError(
            f"no password for principal {principal!r} in {passwords_file(home)}",
            hint="start the secure broker (`consentinel stack up --secure`) and run "
            "`consentinel acls apply` as admin",
        )
    return {
        "bootstrap.servers": bootstrap_servers(),
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": SCRAM_MECHANISM,
        "sasl.username": principal,
        "sasl.password": password,
    }


def credentials_lines(
    home: Path, principal: str, known: Iterable[str], *, prefix: str = ""
) -> list[str]:
    """Return ``export KAFKA_...=...`` lines for ``principal`` (its password generated if new).

    ``known`` are the deployment's principals as :func:`~streams.admin.acl_plan.load_acl_plan`
    gives them for topic prefix ``prefix`` (``<prefix><name>``); ``principal`` may be named with or
    without the prefix (``egress`` and ``staging.egress`` both mean ``staging.egress`` when the
    prefix is ``staging.``), so the lines are always the prefixed principal's. ``admin`` is never
    prefixed.

    Raises:
        ConfigError: ``principal`` is not one of ``known`` (the principals of ``acls.yaml``).
    """
    names = set(known) | {ADMIN}
    principal = principal.removeprefix("User:")
    if principal not in names and prefix + principal in names:
        principal = prefix + principal
    if principal not in names:
        shown = sorted({n.removeprefix(prefix) for n in names})
        where = f" (topic prefix {prefix!r})" if prefix else ""
        raise ConfigError(
            f"unknown principal {principal!r}{where}",
            hint=f"one of: {', '.join(shown)} (declared in deploy/acls.yaml)",
        )
    if principal == ADMIN:
        password = PasswordStore(passwords_file(home)).get(ADMIN)
        if password is None:
            raise ConfigError(
                "the secure broker has no admin password yet",
                hint="run `consentinel stack up --secure` first",
            )
    else:
        password = PasswordStore(passwords_file(home)).ensure([principal])[principal]
    values = {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap_servers(),
        "KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "KAFKA_SASL_MECHANISM": SCRAM_MECHANISM,
        "KAFKA_SASL_USERNAME": principal,
        "KAFKA_SASL_PASSWORD": password,
    }
    return [f"export {name}={shlex.quote(value)}" for name, value in values.items()]


@dataclass(frozen=True)
class SecureLaunch:
    """How :mod:`streams.stack.local` starts the secure broker and tells that it is ready."""

    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    where: str


def secure_kafka(home: Path, lib: Path, log_dir: Path, java: str) -> SecureLaunch:
    """Write the secure broker's config (0600), format its storage once, return how to run it.

    The storage is formatted with the admin's SCRAM credential (``--add-scram``), generated on
    first use and kept in :func:`passwords_file`.

    Raises:
        StackError: formatting the storage failed (the message never contains a password).
    """
    conf_dir = secure_dir(home)
    data = conf_dir / "data"
    conf_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(conf_dir, 0o700)
    store = PasswordStore(passwords_file(home))
    admin_password = store.ensure([ADMIN])[ADMIN]
    props = conf_dir / "server.properties"
    text = (
        (Path(__file__).parent / "kafka-secure.properties")
        .read_text()
        .format(
            data=data,
            port=SECURE_KAFKA_PORT,
            controller_port=SECURE_CONTROLLER_PORT,
            admin_password=admin_password,
        )
    )
    fd = os.open(props, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(props, 0o600)
    log4j = conf_dir / "log4j2.properties"
    log4j.write_text(
        (Path(__file__).parent / "kafka-log4j2.properties")
        .read_text()
        .replace("{log}", str(log_dir / f"{SECURE_NAME}-server.log"))
    )
    base = [java, "-cp", f"{lib}/*", f"-Dlog4j2.configurationFile={log4j}"]
    if not (data / "meta.properties").exists():
        cluster_id = new_cluster_id()
        scram = scram_bootstrap_argument(ADMIN, admin_password)
        result = subprocess.run(
            [
                *base,
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--standalone",
                "--ignore-formatted",
                "--add-scram",
                scram,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            detail = scrub(result.stderr.strip()[-800:], [admin_password, scram])
            raise StackError(
                f"formatting the secure broker's KRaft storage in {data} failed: {detail}",
                hint=f"remove {conf_dir} and run `consentinel stack up --secure` again",
            )
    heap = ["-Xms256m", "-Xmx768m", "-XX:+UseG1GC"]
    return SecureLaunch(
        port=SECURE_KAFKA_PORT,
        command=[java, *heap, *base[1:], "kafka.Kafka", str(props)],
        cwd=conf_dir,
        ready=lambda: secure_ready(home),
        where=f"{bootstrap_servers()} SASL_PLAINTEXT/{SCRAM_MECHANISM}, ACLs on (data {data}); "
        "`consentinel stack credentials PRINCIPAL` prints a principal's settings",
    )


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def quiet(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with librdkafka's own log lines dropped (errors still raise)."""
    silent = logging.getLogger("consentinel.librdkafka.secure")
    silent.addHandler(logging.NullHandler())
    silent.propagate = False
    return {**config, "log_level": 0, "logger": silent}


def can_authenticate(config: dict[str, Any], timeout_s: float = 5.0) -> bool:
    """Return whether a client with ``config`` authenticates and reads metadata within the bound."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    refused: list[Any] = []

    def on_error(error: Any) -> None:
        if error.code() in (KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED):
            refused.append(error)

    conf: dict[str, Any] = {**quiet(config), "error_cb": on_error, "reconnect.backoff.max.ms": 500}
    admin = AdminClient(conf)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not refused:
        with contextlib.suppress(KafkaException):
            admin.list_topics(timeout=min(1.0, max(0.1, deadline - time.monotonic())))
            return True
        admin.poll(0)
    return False


def secure_ready(home: Path) -> bool:
    """Return whether the secure broker answers the admin's authenticated metadata request."""
    if not _port_open(SECURE_KAFKA_PORT):
        return False
    try:
        config = client_config(home, ADMIN)
    except ConfigError:
        return False
    return can_authenticate(config, timeout_s=2.0)


def stop_secure(home: Path, *, say: Callable[[str], None] = print) -> bool:
    """Stop only the secure broker of the stack at ``home``; return whether it was running."""
    from streams.stack.lifecycle import terminate
    from streams.stack.local import LocalStack

    stack = LocalStack(home, say=say)
    pid = stack.running_pid(SECURE_NAME)
    if pid is None:
        return False
    say(f"{SECURE_NAME}: stopping pid {pid}...")
    terminate(pid)
    (stack.run_dir / f"{SECURE_NAME}.pid").unlink(missing_ok=True)
    say(f"{SECURE_NAME}: stopped")
    return True
