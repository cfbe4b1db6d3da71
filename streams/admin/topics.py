"""``consentinel topics apply``: make the broker's topics match ``deploy/topics.yaml``.

Idempotent: a second run changes nothing and says so. It creates missing topics, aligns the
configs it manages, and refuses (without changing anything) when co-partitioned topics would not
share one partition count, because that would send a user's events to different partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AdminClient,
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from streams.errors import ConfigError, TopicLayoutError
from streams.resources import topics_file

TOPICS_FILE = topics_file()
"""The topic layout shipped with the package (``deploy/topics.yaml`` in a checkout)."""
CO_PARTITIONED_ROLES = frozenset({"input", "output", "changelog"})
AUTO = "auto"
"""``replication_factor: auto``: three replicas on a cluster of three or more brokers, else one."""
REPLICATED = 3


@dataclass(frozen=True)
class TopicSpec:
    """One topic as the project wants it."""

    name: str
    role: str
    partitions: int
    replication_factor: int
    """Replicas per partition; 0 until resolved from ``auto`` by :func:`for_cluster`."""
    config: dict[str, str] = field(default_factory=dict)


def load_topic_specs(
    path: Path = TOPICS_FILE, *, partitions: int | None = None, prefix: str = ""
) -> list[TopicSpec]:
    """Read the topic layout; ``partitions`` overrides the shared count, ``prefix`` the names."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read topic layout {path}: {exc}") from exc
    default_partitions = int(partitions or doc["partitions"])
    replication = _replication(doc.get("replication_factor", AUTO))
    specs = []
    for name, body in doc["topics"].items():
        body = body or {}
        role = body.get("role", "output")
        count = int(body.get("partitions", default_partitions))
        if role in CO_PARTITIONED_ROLES:
            count = default_partitions
        config = {k: str(v) for k, v in (body.get("config") or {}).items()}
        specs.append(TopicSpec(prefix + name, role, count, replication, config))
    return specs


def _replication(value: object) -> int:
    if value == AUTO:
        return 0
    try:
        factor = int(str(value))
    except ValueError:
        factor = 0
    if factor < 1:
        raise ConfigError(
            f"replication_factor {value!r} in the topic layout is neither {AUTO!r} nor a positive "
            "number",
            hint=f"use {AUTO!r} (3 on a cluster of three or more brokers, else 1) or a number",
        )
    return factor


def for_cluster(specs: list[TopicSpec], brokers: int) -> list[TopicSpec]:
    """Resolve ``auto`` replication for a cluster of ``brokers`` brokers.

    Three or more brokers: three replicas and ``min.insync.replicas=2`` (a write survives one
    broker's death; two down stop writes rather than lose them). Fewer: one replica each.
    """
    factor = REPLICATED if brokers >= REPLICATED else 1
    resolved = []
    for spec in specs:
        if spec.replication_factor:
            resolved.append(spec)
            continue
        config = dict(spec.config)
        if factor == REPLICATED:
            config.setdefault("min.insync.replicas", str(REPLICATED - 1))
        resolved.append(TopicSpec(spec.name, spec.role, spec.partitions, factor, config))
    return resolved


def apply_topics(admin: AdminClient, specs: list[TopicSpec], *, timeout: float = 30) -> list[str]:
    """Create or align every topic in ``specs``; return one line per change made.

    ``auto`` replication is resolved against the brokers the cluster has now (:func:`for_cluster`).
    """
    cluster = admin.list_topics(timeout=timeout)
    metadata = cluster.topics
    specs = for_cluster(specs, len(cluster.brokers))
    _refuse_mismatched_partitions(specs, metadata)
    changes: list[str] = []
    missing = [s for s in specs if s.name not in metadata]
    if missing:
        futures = admin.create_topics(
            [
                NewTopic(s.name, s.partitions, s.replication_factor, config=s.config)
                for s in missing
            ],
            operation_timeout=timeout,
        )
        for name, future in futures.items():
            try:
                future.result()
                spec = next(s for s in missing if s.name == name)
                changes.append(
                    f"created {name} ({spec.partitions} partitions, "
                    f"replication factor {spec.replication_factor})"
                )
            except KafkaException as exc:
                if "TOPIC_ALREADY_EXISTS" not in str(exc):
                    raise TopicLayoutError(f"could not create topic {name}: {exc}") from exc
    existing = [s for s in specs if s.name in metadata and s.config]
    changes.extend(_align_configs(admin, existing, timeout))
    return changes


def _refuse_mismatched_partitions(specs: list[TopicSpec], metadata: dict[str, Any]) -> None:
    problems = []
    for spec in specs:
        topic = metadata.get(spec.name)
        if topic is None or topic.error is not None:
            continue
        have = len(topic.partitions)
        if have != spec.partitions:
            problems.append(
                f"{spec.name} has {have} partitions, the layout needs {spec.partitions}"
            )
    if problems:
        raise TopicLayoutError(
            "refusing to apply: " + "; ".join(problems),
            hint="co-partitioned topics must share one partition count; changing it re-keys "
            "users to other partitions (see the README's 'Changing the partition count')",
        )


def _align_configs(admin: AdminClient, specs: list[TopicSpec], timeout: float) -> list[str]:
    if not specs:
        return []
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    described = admin.describe_configs(resources, request_timeout=timeout)
    changes = []
    to_alter = []
    for spec, resource in zip(specs, resources, strict=True):
        current = {k: v.value for k, v in described[resource].result().items()}
        differing = {k: v for k, v in spec.config.items() if current.get(k) != v}
        if not differing:
            continue
        entries = [
            ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
            for k, v in differing.items()
        ]
        to_alter.append(
            ConfigResource(ConfigResource.Type.TOPIC, spec.name, incremental_configs=entries)
        )
        for key, value in differing.items():
            changes.append(f"{spec.name}: {key} {current.get(key)!r} -> {value!r}")
    if to_alter:
        for future in admin.incremental_alter_configs(to_alter).values():
            future.result()
    return changes
