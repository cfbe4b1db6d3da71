"""Bounded reachability checks of Kafka and the schema registry, run before a command starts.

An operator who points ``KAFKA_BOOTSTRAP_SERVERS`` or ``SCHEMA_REGISTRY_URL`` at the wrong place
gets one line saying which one cannot be reached, within :data:`DEFAULT_TIMEOUT_S` seconds, and the
exit code :data:`EXIT_UNREACHABLE`, instead of minutes of librdkafka log lines and a traceback.

The Kafka probe silences librdkafka (``log_level`` 0 and a logger that drops everything) and asks
for the cluster's metadata with a bounded ``list_topics(timeout=...)``; it gives up early when
librdkafka reports every broker down or the host name unresolvable a few times in a row.

:func:`check_topic_configs` is the readiness check of a processor's input topics' settings: the
gate is not ready while an input topic's ``message.timestamp.type`` is not ``LogAppendTime``
(CONTRACT §3), since its check of producers' clocks trusts the record timestamp as the broker's.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any

from streams.errors import (
    AuthorizationError,
    ConfigError,
    ConsentinelError,
    TopicLayoutError,
    TransientError,
)
from streams.settings import Settings

EXIT_OK = 0
"""The command did what was asked and found nothing wrong."""
EXIT_FINDING = 1
"""The command ran and found a problem (``audit verify``: a broken chain)."""
EXIT_USAGE = 2
"""Bad command line, settings or input file: fix the invocation."""
EXIT_UNREACHABLE = 3
"""Kafka or the schema registry cannot be reached (or refused the connection)."""

DEFAULT_TIMEOUT_S = 10.0
"""Upper bound of one probe; both probes together stay under 15 s."""
TIMEOUT_ENV = "CONSENTINEL_CONNECT_TIMEOUT_S"
"""Environment variable overriding :data:`DEFAULT_TIMEOUT_S` (seconds, > 0)."""

_GIVE_UP_AFTER_S = 3.0
"""Stop waiting this soon once librdkafka says every broker is down (a refused port)."""


class UnreachableError(ConsentinelError):
    """Kafka or the schema registry does not answer; the command did nothing."""

    error_kind = "UNREACHABLE"


LOG_APPEND_TIME = (("message.timestamp.type", "LogAppendTime"),)
"""What every input topic of the gate must be configured with (CONTRACT §3)."""

log = logging.getLogger(__name__)


def check_topic_configs(
    admin: Any, names: Sequence[str], required: Mapping[str, str], *, timeout_s: float = 15.0
) -> None:
    """Raise :class:`TopicLayoutError` naming every topic of ``names`` whose config differs.

    ``required`` maps a topic config key to the value it must have. A broker that cannot answer
    is a :class:`TransientError` (the caller retries). A principal without the DescribeConfigs
    ACL cannot tell: that is an :class:`AuthorizationError`, so the processor stays not ready
    (fail closed) until the ACL is granted.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import ConfigResource  # type: ignore[attr-defined]

    if not names or not required:
        return
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in names]
    wrong: list[str] = []
    denied: list[str] = []
    try:
        futures = admin.describe_configs(resources, request_timeout=timeout_s)
        for resource in resources:
            try:
                configs = futures[resource].result()
            except KafkaException as exc:
                error = exc.args[0] if exc.args else None
                code = error.code() if isinstance(error, KafkaError) else None
                if code in (
                    KafkaError.TOPIC_AUTHORIZATION_FAILED,
                    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                ):
                    denied.append(resource.name)
                    continue
                raise
            for key, wanted in required.items():
                entry = configs.get(key)
                value = None if entry is None else entry.value
                if value != wanted:
                    wrong.append(f"{resource.name} has {key}={value} (must be {wanted})")
    except KafkaException as exc:
        raise TransientError(f"cannot read the input topics' configs: {exc}") from exc
    if denied:
        raise AuthorizationError(
            f"cannot check {', '.join(required)} of {', '.join(denied)}: this principal lacks"
            " the DescribeConfigs ACL on them",
            hint="grant it (deploy/acls.yaml `describe_configs`, then `consentinel acls apply`);"
            " unchecked, a producer's own timestamps could pass for the broker's",
        )
    if wrong:
        raise TopicLayoutError(
            "input topic config: " + "; ".join(wrong),
            hint="set it with `consentinel topics apply` (deploy/topics.yaml) or kafka-configs;"
            " with CreateTime a producer stamps its own records and can backdate past the"
            " time.max_lateness_s check",
        )


def probe_timeout() -> float:
    """Return the probe timeout in seconds from :data:`TIMEOUT_ENV` or the default."""
    raw = os.environ.get(TIMEOUT_ENV)
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value <= 0:
        raise ConfigError(f"{TIMEOUT_ENV}={raw!r} is not a positive number of seconds")
    return value


def quiet_kafka_config(config: dict[str, Any]) -> dict[str, Any]:
    """Return ``config`` with librdkafka's own logging silenced (errors still raise)."""
    silent = logging.getLogger("consentinel.librdkafka")
    silent.addHandler(logging.NullHandler())
    silent.propagate = False
    return {**config, "log_level": 0, "logger": silent}


def probe_kafka(settings: Settings, *, timeout_s: float | None = None) -> None:
    """Raise :class:`UnreachableError` unless a broker answers a metadata request in time."""
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient

    timeout = probe_timeout() if timeout_s is None else timeout_s
    fatal: list[Any] = []
    down = {KafkaError._ALL_BROKERS_DOWN, KafkaError._RESOLVE, KafkaError._TRANSPORT}
    auth = {KafkaError._AUTHENTICATION, KafkaError.SASL_AUTHENTICATION_FAILED}

    def on_error(error: Any) -> None:
        if error.code() in down or error.code() in auth:
            fatal.append(error)

    config = quiet_kafka_config(settings.kafka_config())
    config.update(
        {
            "error_cb": on_error,
            "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000)),
            "reconnect.backoff.max.ms": 1000,
        }
    )
    where = settings.kafka_bootstrap_servers
    started = time.monotonic()
    deadline = started + timeout
    admin = AdminClient(config)
    last: str = "no answer"
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        try:
            admin.list_topics(timeout=min(1.0, remaining))
            return
        except KafkaException as exc:
            last = str(exc.args[0].str() if exc.args else exc)
        admin.poll(0)
        if any(e.code() in auth for e in fatal):
            raise ConfigError(
                f"Kafka at {where} refused our credentials: {fatal[-1].str()}",
                hint="check KAFKA_SECURITY_PROTOCOL, KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME "
                "and KAFKA_SASL_PASSWORD",
            )
        if fatal and time.monotonic() - started >= _GIVE_UP_AFTER_S:
            last = fatal[-1].str()
            break
    raise UnreachableError(
        f"cannot reach Kafka at {where} within {time.monotonic() - started:.0f}s ({last})",
        hint="check KAFKA_BOOTSTRAP_SERVERS, or start the local stack: consentinel stack up",
    )


def probe_registry(settings: Settings, *, timeout_s: float | None = None) -> None:
    """Raise :class:`UnreachableError` unless the schema registry lists its subjects in time."""
    import httpx

    timeout = probe_timeout() if timeout_s is None else timeout_s
    url = settings.schema_registry_url.rstrip("/")
    user = os.environ.get("SCHEMA_REGISTRY_USERNAME")
    password = os.environ.get("SCHEMA_REGISTRY_PASSWORD", "")
    auth = (user, password) if user else None
    hint = "check SCHEMA_REGISTRY_URL, or start the local stack: consentinel stack up"
    try:
        response = httpx.get(f"{url}/subjects", timeout=min(timeout, 5.0), auth=auth)
    except httpx.HTTPError as exc:
        reason = str(exc) or type(exc).__name__
        raise UnreachableError(
            f"cannot reach the schema registry at {url} ({reason})", hint=hint
        ) from None
    if response.status_code in (401, 403):
        raise ConfigError(
            f"the schema registry at {url} refused our credentials (HTTP {response.status_code})",
            hint="check SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD",
        )
    if response.status_code >= 500:
        raise UnreachableError(
            f"the schema registry at {url} is not serving (HTTP {response.status_code})",
            hint=hint,
        )
    if response.status_code != 200:
        raise ConfigError(
            f"{url} does not look like a schema registry (GET /subjects: "
            f"HTTP {response.status_code})",
            hint="SCHEMA_REGISTRY_URL must end in the Confluent-compatible API, e.g. "
            "http://localhost:8081/apis/ccompat/v7",
        )


NEEDS: dict[str, tuple[str, ...]] = {
    "topics": ("kafka",),
    "acls": ("kafka",),
    "schemas": ("registry",),
    "audit": ("kafka", "registry"),
    "report": ("kafka", "registry"),
    "gate": ("kafka", "registry"),
    "detect": ("kafka", "registry"),
    "recipients": ("kafka", "registry"),
    "egress": ("kafka", "registry"),
    "lineage": ("kafka", "registry"),
    "simulate": ("kafka", "registry"),
    "demo": ("kafka", "registry"),
}
"""Command → the services it cannot start without (checked in this order)."""


OFFLINE_ACTIONS: frozenset[tuple[str, str]] = frozenset({("audit", "keygen")})
"""``(command, action)`` pairs that work without Kafka or the registry: never probed."""


def check(command: str, settings: Settings, action: str | None = None) -> None:
    """Probe what ``command`` needs (see :data:`NEEDS`); raise on the first that fails."""
    if action is not None and (command, action) in OFFLINE_ACTIONS:
        return
    for service in NEEDS.get(command, ()):
        if service == "kafka":
            probe_kafka(settings)
        else:
            probe_registry(settings)
