"""Replication of the topic layout: ``auto`` resolves to the cluster the topics are applied to."""

from __future__ import annotations

from pathlib import Path

import pytest

from streams.admin.topics import TOPICS_FILE, for_cluster, load_topic_specs
from streams.errors import ConfigError


def test_the_shipped_layout_is_auto_replicated() -> None:
    assert {s.replication_factor for s in load_topic_specs(TOPICS_FILE)} == {0}


@pytest.mark.parametrize(("brokers", "factor", "min_isr"), [(1, 1, None), (3, 3, "2"), (5, 3, "2")])
def test_auto_follows_the_broker_count(brokers: int, factor: int, min_isr: str | None) -> None:
    resolved = for_cluster(load_topic_specs(TOPICS_FILE), brokers)
    assert {s.replication_factor for s in resolved} == {factor}
    assert {s.config.get("min.insync.replicas") for s in resolved} == {min_isr}


def test_a_number_is_kept(tmp_path: Path) -> None:
    layout = tmp_path / "topics.yaml"
    layout.write_text("partitions: 2\nreplication_factor: 2\ntopics:\n  a.b: {role: output}\n")
    (spec,) = for_cluster(load_topic_specs(layout), 3)
    assert (spec.replication_factor, spec.config) == (2, {})


@pytest.mark.parametrize("value", ["0", "three", "-1"])
def test_a_bad_factor_is_refused(tmp_path: Path, value: str) -> None:
    layout = tmp_path / "topics.yaml"
    layout.write_text(f"partitions: 2\nreplication_factor: {value}\ntopics:\n  a.b: {{}}\n")
    with pytest.raises(ConfigError, match="replication_factor"):
        load_topic_specs(layout)
