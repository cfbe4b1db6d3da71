"""deploy/k8s with its operators: Strimzi (cluster, topics, users, credentials), KEDA, monitoring.

Built with kustomize (tests/deploy/k8s_build.py); the schemas are checked in test_k8s.py.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

import pytest
import yaml

from streams.stack import cluster
from tests.deploy.k8s_build import BASE, K8S, PRODUCTION, REPO, build, env_of, of_kind

pytestmark = pytest.mark.deploy

STRIMZI_V1 = "kafka.strimzi.io/v1"


def strimzi_module() -> Any:
    spec = importlib.util.spec_from_file_location("strimzi", K8S / "strimzi_resources.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_strimzi_resources_use_the_api_current_strimzi_serves() -> None:
    strimzi = strimzi_module()
    assert strimzi.STRIMZI_API == STRIMZI_V1
    major = int(strimzi.STRIMZI_VERSION.split(".")[0])
    assert major >= 1, "Strimzi 1.0 serves only kafka.strimzi.io/v1"
    docs = [d for d in build(PRODUCTION) if d["apiVersion"].startswith("kafka.strimzi.io/")]
    assert {d["kind"] for d in docs} == {"Kafka", "KafkaNodePool", "KafkaTopic", "KafkaUser"}
    assert {d["apiVersion"] for d in docs} == {STRIMZI_V1}


def test_kafka_cluster_is_replicated_like_the_local_three_node_cluster() -> None:
    docs = build(PRODUCTION)
    (kafka,) = of_kind(docs, "Kafka").values()
    config = kafka["spec"]["kafka"]["config"]
    assert config["default.replication.factor"] == cluster.REPLICATION_FACTOR == 3
    assert config["min.insync.replicas"] == cluster.MIN_INSYNC_REPLICAS == 2
    assert config["offsets.topic.replication.factor"] == 3
    assert config["transaction.state.log.replication.factor"] == 3
    assert config["transaction.state.log.min.isr"] == 2
    assert config["unclean.leader.election.enable"] is False
    pools = of_kind(docs, "KafkaNodePool")
    brokers = [p for p in pools.values() if "broker" in p["spec"]["roles"]]
    assert sum(p["spec"]["replicas"] for p in brokers) == cluster.NODES == 3
    for pool in pools.values():
        assert pool["metadata"]["labels"]["strimzi.io/cluster"] == kafka["metadata"]["name"]
    (listener,) = kafka["spec"]["kafka"]["listeners"]
    assert listener["tls"] is True and listener["authentication"]["type"] == "scram-sha-512"
    assert kafka["spec"]["kafka"]["authorization"]["type"] == "simple"
    assert {"topicOperator", "userOperator"} <= set(kafka["spec"]["entityOperator"])


def test_topics_are_replicated_like_the_cluster() -> None:
    docs = build(BASE)
    topics = yaml.safe_load((REPO / "deploy" / "topics.yaml").read_text())["topics"]
    made = {d["spec"]["topicName"]: d for d in of_kind(docs, "KafkaTopic").values()}
    assert set(made) == set(topics)
    for topic in made.values():
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "consentinel"
        assert topic["spec"]["replicas"] == 3
        assert topic["spec"]["config"]["min.insync.replicas"] == "2"


def test_users_carry_every_acl_of_the_acl_file() -> None:
    docs = build(BASE)
    principals = yaml.safe_load((REPO / "deploy" / "acls.yaml").read_text())["principals"]
    users = of_kind(docs, "KafkaUser")
    assert set(users) == set(principals)
    for user in users.values():
        assert user["spec"]["authentication"]["type"] == "scram-sha-512"
    gate = users["consentinel-gate"]["spec"]["authorization"]["acls"]
    transactional = {
        "type": "transactionalId",
        "name": "consentinel-gate-",
        "patternType": "prefix",
    }
    assert transactional in [acl["resource"] for acl in gate]
    # the gate stays not ready without DescribeConfigs on its inputs (deploy/acls.yaml)
    described = {a["resource"]["name"] for a in gate if "DescribeConfigs" in a["operations"]}
    assert described == set(principals["consentinel-gate"]["describe_configs"])
    with pytest.raises(ValueError, match="no_such_key"):
        strimzi_module().principal_acls({"no_such_key": ["x"]})


def test_kafka_credentials_are_the_secrets_strimzi_generates() -> None:
    docs = build(PRODUCTION)
    (kafka,) = of_kind(docs, "Kafka").values()
    name = kafka["metadata"]["name"]
    listener_port = kafka["spec"]["kafka"]["listeners"][0]["port"]
    users = of_kind(docs, "KafkaUser")
    assert not of_kind(docs, "Secret"), "no Secret is part of the deployment"
    (endpoints,) = [c for c in of_kind(docs, "ConfigMap") if c.startswith("consentinel-endpoints")]
    bootstrap = of_kind(docs, "ConfigMap")[endpoints]["data"]["KAFKA_BOOTSTRAP_SERVERS"]
    assert bootstrap == f"{name}-kafka-bootstrap:{listener_port}"
    for workload, sts in of_kind(docs, "StatefulSet").items():
        pod = sts["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        env = env_of(container)
        assert env["KAFKA_SECURITY_PROTOCOL"]["value"] == "SASL_SSL"
        assert env["KAFKA_SASL_MECHANISM"]["value"] == "SCRAM-SHA-512"
        username = env["KAFKA_SASL_USERNAME"]["value"]
        assert username in users, f"{workload}: {username} is no KafkaUser"
        password = env["KAFKA_SASL_PASSWORD"]
        assert "value" not in password
        assert password["valueFrom"]["secretKeyRef"] == {"name": username, "key": "password"}
        ca_file = env["KAFKA_SSL_CA_LOCATION"]["value"]
        mount = next(m for m in container["volumeMounts"] if ca_file.startswith(m["mountPath"]))
        (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
        assert volume["secret"]["secretName"] == f"{name}-cluster-ca-cert"
        assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert ca_file == f"{mount['mountPath']}/ca.crt"
    example = (K8S / "secrets.example.yaml").read_text()
    assert "KAFKA_SASL_PASSWORD" not in example


def test_keda_trigger_connects_with_tls_and_the_users_secret() -> None:
    docs = build(PRODUCTION)
    (scaled,) = of_kind(docs, "ScaledObject").values()
    assert scaled["spec"]["maxReplicaCount"] <= 8
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "kafka"
    assert trigger["metadata"]["bootstrapServers"] == "consentinel-kafka-bootstrap:9093"
    auth = of_kind(docs, "TriggerAuthentication")[trigger["authenticationRef"]["name"]]["spec"]
    secrets = {r["parameter"]: r for r in auth["secretTargetRef"]}
    assert (
        secrets["ca"]["name"] == "consentinel-cluster-ca-cert" and secrets["ca"]["key"] == "ca.crt"
    )
    assert secrets["password"]["key"] == "password"
    assert secrets["password"]["name"] in of_kind(docs, "KafkaUser")
    plain = {r["parameter"]: r for r in auth["configMapTargetRef"]}
    maps = of_kind(docs, "ConfigMap")
    values = {p: maps[r["name"]]["data"][r["key"]] for p, r in plain.items()}
    assert values == {
        "sasl": "scram_sha512",
        "tls": "enable",
        "username": secrets["password"]["name"],
    }


def test_alerts_carry_their_labels_and_runbook_links_themselves() -> None:
    docs = build(BASE)
    (rule,) = of_kind(docs, "PrometheusRule").values()
    source = yaml.safe_load((REPO / "deploy/prometheus/rules/consentinel.yml").read_text())
    assert [g["name"] for g in rule["spec"]["groups"]] == [g["name"] for g in source["groups"]]
    alerts = [r for g in rule["spec"]["groups"] for r in g["rules"] if "alert" in r]
    expected = [r for g in source["groups"] for r in g["rules"] if "alert" in r]
    assert [a["expr"] for a in alerts] == [a["expr"] for a in expected]
    assert len(alerts) >= 10
    for alert in alerts:
        assert alert["labels"]["system"] == "consentinel", alert["alert"]
        assert alert["labels"]["severity"] in {"critical", "warning", "info"}
        url = alert["annotations"]["runbook_url"]
        assert "$externalLabels" not in url
        assert re.fullmatch(rf"https://\S+/docs/runbook\.md#runbook-{alert['alert'].lower()}", url)
    (config,) = of_kind(docs, "AlertmanagerConfig").values()
    route = config["spec"]["route"]
    assert {"name": "system", "value": "consentinel", "matchType": "="} in route["matchers"]
    receivers = {r["name"]: r for r in config["spec"]["receivers"]}
    for name in [route["receiver"]] + [r["receiver"] for r in route["routes"]]:
        assert receivers[name]["webhookConfigs"], name
    severities = {m["value"] for r in route["routes"] for m in r["matchers"]}
    assert severities <= {a["labels"]["severity"] for a in alerts}
