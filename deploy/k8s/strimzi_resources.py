"""Strimzi custom resources derived from the project's own files (used by generate.py).

- ``kafka_cluster()``: an example ``Kafka`` with its ``KafkaNodePool``s, replicated like the local
  three-node cluster of ``consentinel stack up --brokers 3`` (streams/stack/cluster.py): replication
  factor 3, ``min.insync.replicas=2``, the transaction state log likewise, no unclean elections.
  One internal TLS listener with SCRAM-SHA-512 and ``simple`` authorization (the ACLs below).
- ``kafka_topics()``: one ``KafkaTopic`` per topic of deploy/topics.yaml.
- ``kafka_users()``: one ``KafkaUser`` (SCRAM-SHA-512) per principal of deploy/acls.yaml. Strimzi's
  User Operator writes each user's password into a Secret of the user's name (key ``password``),
  which the pods reference: nobody copies a password.

API version ``kafka.strimzi.io/v1``: introduced in Strimzi 0.49, the only one served from Strimzi
1.0 on (v1beta2 is gone there). Targeted and checked against Strimzi 1.2.0.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from streams.admin.acl_plan import PRINCIPAL_KEYS  # noqa: E402
from streams.stack.cluster import MIN_INSYNC_REPLICAS, NODES, REPLICATION_FACTOR  # noqa: E402

STRIMZI_API = "kafka.strimzi.io/v1"
STRIMZI_VERSION = "1.2.0"
"""The Strimzi release these resources target (its CRDs serve only ``v1``)."""
KAFKA_VERSION = "4.3.1"
"""A Kafka version Strimzi 1.2.0 runs (its examples use this one)."""
METADATA_VERSION = "4.3-IV0"
STRIMZI_CLUSTER = "consentinel"
"""The ``Kafka`` resource's name: the ``strimzi.io/cluster`` label of topics and users, and the
prefix of the Secrets and Services Strimzi makes (``consentinel-cluster-ca-cert``,
``consentinel-kafka-bootstrap``).
"""
TLS_LISTENER_PORT = 9093
CLUSTER_CONFIG: dict[str, Any] = {
    "default.replication.factor": REPLICATION_FACTOR,
    "min.insync.replicas": MIN_INSYNC_REPLICAS,
    "offsets.topic.replication.factor": REPLICATION_FACTOR,
    "transaction.state.log.replication.factor": REPLICATION_FACTOR,
    "transaction.state.log.min.isr": MIN_INSYNC_REPLICAS,
    "share.coordinator.state.topic.replication.factor": REPLICATION_FACTOR,
    "share.coordinator.state.topic.min.isr": MIN_INSYNC_REPLICAS,
    "unclean.leader.election.enable": False,
    "auto.create.topics.enable": False,
    "transaction.max.timeout.ms": 900000,
}
"""Broker settings shared with the local three-node cluster (streams/stack/cluster.py)."""


def _cluster_label() -> dict[str, str]:
    return {"strimzi.io/cluster": STRIMZI_CLUSTER}


def _node_pool(name: str, role: str, size: str) -> dict[str, Any]:
    return {
        "apiVersion": STRIMZI_API,
        "kind": "KafkaNodePool",
        "metadata": {"name": name, "labels": _cluster_label()},
        "spec": {
            "replicas": NODES,
            "roles": [role],
            "storage": {
                "type": "jbod",
                "volumes": [
                    {
                        "id": 0,
                        "type": "persistent-claim",
                        "size": size,
                        "deleteClaim": False,
                        "kraftMetadata": "shared",
                    }
                ],
            },
        },
    }


def kafka_cluster() -> list[dict[str, Any]]:
    """Return the example ``Kafka`` and its controller and broker ``KafkaNodePool``s.

    No super users: the Topic and User Operators create the topics and users, so no ``admin``
    principal (deploy/acls.yaml ``super_users``, for the local stack) is needed on Strimzi.
    """
    kafka = {
        "apiVersion": STRIMZI_API,
        "kind": "Kafka",
        "metadata": {"name": STRIMZI_CLUSTER},
        "spec": {
            "kafka": {
                "version": KAFKA_VERSION,
                "metadataVersion": METADATA_VERSION,
                "listeners": [
                    {
                        "name": "tls",
                        "port": TLS_LISTENER_PORT,
                        "type": "internal",
                        "tls": True,
                        "authentication": {"type": "scram-sha-512"},
                    }
                ],
                "authorization": {"type": "simple"},
                "config": CLUSTER_CONFIG,
            },
            "entityOperator": {"topicOperator": {}, "userOperator": {}},
        },
    }
    return [
        _node_pool("controller", "controller", "20Gi"),
        _node_pool("broker", "broker", "100Gi"),
        kafka,
    ]


def kafka_topics() -> list[dict[str, Any]]:
    """Return one ``KafkaTopic`` per topic of deploy/topics.yaml, replicated like the cluster."""
    from streams.admin.topics import load_topic_specs

    docs = []
    for spec in load_topic_specs(REPO / "deploy" / "topics.yaml"):
        docs.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaTopic",
                "metadata": {
                    "name": spec.name.replace(".", "-").replace("_", "-"),
                    "labels": _cluster_label(),
                },
                "spec": {
                    "topicName": spec.name,
                    "partitions": spec.partitions,
                    "replicas": REPLICATION_FACTOR,
                    "config": {"min.insync.replicas": str(MIN_INSYNC_REPLICAS), **spec.config},
                },
            }
        )
    return docs


def _acl(kind: str, name: str | None, pattern: str, operations: list[str]) -> dict[str, Any]:
    resource: dict[str, Any] = {"type": kind}
    if name is not None:
        resource.update(name=name, patternType=pattern)
    return {"resource": resource, "type": "allow", "operations": operations, "host": "*"}


def _named(entry: Any) -> str:
    return str(entry["name"] if isinstance(entry, dict) else entry)


def principal_acls(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Translate one principal of deploy/acls.yaml into Strimzi ``simple`` authorization ACLs."""
    unknown = set(body) - PRINCIPAL_KEYS
    if unknown:
        raise ValueError(f"deploy/acls.yaml: no Strimzi translation for {sorted(unknown)}")
    acls: list[dict[str, Any]] = []
    for topic in body.get("read", []):
        acls.append(_acl("topic", _named(topic), "literal", ["Read", "Describe"]))
    for topic in body.get("write", []):
        acls.append(_acl("topic", _named(topic), "literal", ["Write", "Describe"]))
    for topic in body.get("create", []):
        acls.append(_acl("topic", _named(topic), "literal", ["Create"]))
    for topic in body.get("describe_configs", []):
        acls.append(_acl("topic", _named(topic), "literal", ["DescribeConfigs"]))
    verbs = {"read": "Read", "write": "Write", "create": "Create"}
    for prefix, allowed in (body.get("topic_prefixes") or {}).items():
        operations = [verbs[v] for v in allowed] + ["Describe"]
        acls.append(_acl("topic", str(prefix), "prefix", operations))
    for group in body.get("groups", []):
        acls.append(_acl("group", _named(group), "literal", ["Read"]))
    for prefix in body.get("group_prefixes", []):
        acls.append(_acl("group", _named(prefix), "prefix", ["Read"]))
    for prefix in body.get("transactional_id_prefixes", []):
        acls.append(_acl("transactionalId", _named(prefix), "prefix", ["Write", "Describe"]))
    if body.get("idempotent_write"):
        acls.append(_acl("cluster", None, "literal", ["IdempotentWrite"]))
    return acls


def load_acl_file() -> dict[str, Any]:
    """Return deploy/acls.yaml."""
    return yaml.safe_load((REPO / "deploy" / "acls.yaml").read_text()) or {}


def kafka_users() -> list[dict[str, Any]]:
    """Return one ``KafkaUser`` (SCRAM-SHA-512) per principal of deploy/acls.yaml.

    The local stack's super users (``super_users``) have no KafkaUser: see :func:`kafka_cluster`.
    """
    docs = []
    for name, body in (load_acl_file().get("principals") or {}).items():
        body = body or {}
        metadata: dict[str, Any] = {"name": str(name), "labels": _cluster_label()}
        if body.get("does"):
            metadata["annotations"] = {"consentinel.io/does": str(body["does"])}
        docs.append(
            {
                "apiVersion": STRIMZI_API,
                "kind": "KafkaUser",
                "metadata": metadata,
                "spec": {
                    "authentication": {"type": "scram-sha-512"},
                    "authorization": {"type": "simple", "acls": principal_acls(body)},
                },
            }
        )
    return docs
