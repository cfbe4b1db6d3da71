"""Faults of a replicated cluster under load: every request decided exactly once, as unfaulted.

On the local three-node KRaft cluster (replication factor 3, ``min.insync.replicas=2``), a gate
process decides a steady load while brokers are SIGKILLed and brought back. Each test asserts
what the crash tests assert — one decision per request, the verdicts of an unfaulted run, the
approved topic exact, every chain intact — and prints the time from the fault's end to decisions
flowing again (a measurement, not an assertion: ``make faults`` shows it).
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient

from streams import topics
from streams.settings import load_settings
from streams.stack import cluster
from tests.faults.conftest import Cluster
from tests.faults.proxy import PartitionableProxy
from tests.faults.watch import DecisionWatch, ReadinessWatch, free_port
from tests.integration.harness import GateEnv
from tests.integration.test_gate_exactly_once import (
    assert_exactly_once,
    produce_load,
    seed_users,
    stop,
    wait_for_log,
)

pytestmark = [pytest.mark.faults, pytest.mark.integration, pytest.mark.slow]

REQUESTS = 6000
RATE = 300
"""Requests per second: about 20 s of load, the faults inside it."""


def _in_background(plan: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            plan()
        except BaseException as exc:  # surfaced by the test
            errors.append(exc)

    thread = threading.Thread(target=run, name="fault", daemon=True)
    thread.start()
    return thread, errors


def _under_load(
    env: GateEnv,
    now: int,
    plan: Callable[[], None],
    *,
    flush_timeout_s: float = 30,
    plan_timeout_s: float = 120,
) -> list[str]:
    """Send the load while ``plan`` injects its fault; assert every request decided once.

    Returns the request ids. The fault plan runs in a thread; its failure fails the test.
    """
    fault, errors = _in_background(plan)
    ids = produce_load(env, now, 0, REQUESTS, per_second=RATE, flush_timeout_s=flush_timeout_s)
    fault.join(plan_timeout_s)
    assert not fault.is_alive(), f"the fault plan did not finish within {plan_timeout_s}s"
    assert not errors, f"the fault plan failed: {errors[0]!r}"
    assert_exactly_once(env, ids)
    return ids


def _behind_proxy(env: GateEnv) -> GateEnv:
    """``env`` with gates that reach the cluster only through the proxy (:mod:`.proxy`)."""
    return dataclasses.replace(
        env,
        settings=load_settings(
            KAFKA_BOOTSTRAP_SERVERS=cluster.proxied_bootstrap_servers(),
            SCHEMA_REGISTRY_URL=env.settings.schema_registry_url,
            CONSENTINEL_TOPIC_PREFIX=env.prefix,
        ),
    )


def _busiest_leader(kraft_cluster: Cluster, env: GateEnv) -> int:
    admin = AdminClient(env.settings.kafka_config())
    leaders = Counter(kraft_cluster.leaders(admin, env.topic(topics.TOPIC_DECISIONS)).values())
    return leaders.most_common(1)[0][0]


def test_topics_are_replicated_three_times(cluster_env: GateEnv) -> None:
    admin = AdminClient(cluster_env.settings.kafka_config())
    metadata = admin.list_topics(timeout=30).topics
    for logical in (topics.TOPIC_DECISIONS, topics.TOPIC_SHARE_REQUESTS):
        replicas = {
            len(p.replicas) for p in metadata[cluster_env.topic(logical)].partitions.values()
        }
        assert replicas == {3}, f"{logical}: replicas per partition {replicas}"


def test_leader_killed_under_load(kraft_cluster: Cluster, cluster_env: GateEnv) -> None:
    """The broker leading most decision partitions dies for 10 s mid-load, then comes back."""
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    gate = cluster_env.gate_process("f1")
    victim = _busiest_leader(kraft_cluster, cluster_env)
    marks: dict[str, float] = {}

    def plan() -> None:
        time.sleep(REQUESTS / RATE / 3)
        marks["kill"] = time.monotonic()
        kraft_cluster.kill(victim)
        time.sleep(10)
        kraft_cluster.restore()
        marks["back"] = time.monotonic()

    try:
        with DecisionWatch(cluster_env) as watch:
            _under_load(cluster_env, now, plan)
        assert gate.poll() is None, "the gate exited on its own during a broker's death"
    finally:
        stop(gate)
    print(
        f"\nleader {victim} killed: longest pause in decisions "
        f"{watch.longest_gap(marks['kill'], marks['back']):.1f} s while it was down; "
        f"first decision {watch.first_after(marks['back'])} s after it was back"
    )


def test_two_brokers_down_stops_writes_then_resumes(
    kraft_cluster: Cluster, cluster_env: GateEnv
) -> None:
    """One broker dies, then a second: below min.insync.replicas writes stop, none is lost."""
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    gate = cluster_env.gate_process("f2")
    first = _busiest_leader(kraft_cluster, cluster_env)
    second = next(n for n in (1, 2, 3) if n != first)
    marks: dict[str, float] = {}

    def plan() -> None:
        time.sleep(REQUESTS / RATE / 4)
        kraft_cluster.kill(first)
        time.sleep(5)
        marks["minority"] = time.monotonic()
        marks["minority_wall_ms"] = time.time() * 1000
        kraft_cluster.kill(second)
        time.sleep(15)
        marks["restoring"] = time.monotonic()  # restore() returns once all three answer:
        kraft_cluster.restore()  # the first node back restores the quorum before that
        marks["back"] = time.monotonic()

    try:
        with DecisionWatch(cluster_env) as watch:
            _under_load(cluster_env, now, plan, flush_timeout_s=180, plan_timeout_s=180)
            # written and made visible while one broker was left (from the second kill until
            # the restore began); a decision written before it and read late is no such write
            written_while_minority = [
                t
                for t, written in zip(watch.arrivals, watch.written_ms, strict=True)
                if marks["minority"] + 2 < t < marks["restoring"]
                and written > marks["minority_wall_ms"] + 2000
            ]
        assert not written_while_minority, (
            f"{len(written_while_minority)} decisions became visible with one broker of three "
            "(min.insync.replicas=2 must stop writes)"
        )
        assert gate.poll() is None, "the gate exited on its own while the cluster had no quorum"
    finally:
        stop(gate)
    print(
        f"\nbrokers {first} and {second} killed: first decision "
        f"{watch.first_after(marks['back'])} s after both were back"
    )


def test_whole_cluster_down_for_10_s(kraft_cluster: Cluster, cluster_env: GateEnv) -> None:
    """Every broker SIGKILLed for 10 s mid-load (the single-broker outage, on the cluster).

    The gate's group session times out meanwhile; it must rejoin as itself and go on deciding,
    never stay alive deciding nothing.
    """
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    port = free_port()
    gate = cluster_env.gate_process("f3", metrics_port=port)
    marks: dict[str, float] = {}

    def plan() -> None:
        time.sleep(REQUESTS / RATE / 3)
        for node in (1, 2, 3):
            kraft_cluster.kill(node)
        marks["down"] = time.monotonic()
        time.sleep(10)
        kraft_cluster.restore()
        marks["back"] = time.monotonic()

    try:
        with DecisionWatch(cluster_env) as watch, ReadinessWatch(port) as ready:
            _under_load(cluster_env, now, plan, flush_timeout_s=180, plan_timeout_s=180)
        assert gate.poll() is None, "the gate exited on its own during the outage"
    finally:
        stop(gate)
    assert ready.not_ready_within(marks["down"], marks["back"] + 5), "ready with no broker up"
    again = ready.ready_again_after(marks["back"])
    assert again is not None, "never ready again after the cluster came back"
    print(
        f"\nwhole cluster down 10 s: first decision {watch.first_after(marks['back'])} s after,"
        f" ready again {again:.1f} s after"
    )


def test_gates_join_leave_and_crash_under_load(
    kraft_cluster: Cluster, cluster_env: GateEnv
) -> None:
    """A second gate joins under load and is drained (SIGTERM); then a gate is SIGKILLed."""
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    gates = {"a": cluster_env.gate_process("a")}

    def plan() -> None:
        third = REQUESTS / RATE / 4
        time.sleep(third)
        gates["b"] = cluster_env.gate_process("b")  # a rebalance: partitions move to b
        wait_for_log(cluster_env, "b", "restored", timeout_s=120)  # b holds partitions now
        time.sleep(third)
        stop(gates["b"])  # a clean leave: they move back
        time.sleep(third / 2)
        stop(gates["a"], signal.SIGKILL)  # dies holding every partition
        gates["a2"] = cluster_env.gate_process("a")  # the same static member comes back

    try:
        _under_load(cluster_env, now, plan, flush_timeout_s=120)
        assert gates["b"].returncode == 0, "a drained gate stops cleanly"
        assert gates["a2"].poll() is None, "the restarted gate exited on its own"
    finally:
        for gate in gates.values():
            stop(gate)


def test_network_partition_between_gate_and_cluster(
    kraft_cluster: Cluster, cluster_env: GateEnv
) -> None:
    """The gate alone is cut off from every broker for 30 s (a TCP proxy it talks through)."""
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    behind_proxy = _behind_proxy(cluster_env)
    marks: dict[str, float] = {}
    port = free_port()
    with PartitionableProxy() as proxy:
        gate = behind_proxy.gate_process("f5", metrics_port=port)

        def plan() -> None:
            time.sleep(REQUESTS / RATE / 3)
            proxy.cut()
            marks["cut"] = time.monotonic()
            time.sleep(30)
            proxy.heal()
            marks["healed"] = time.monotonic()

        try:
            with DecisionWatch(cluster_env) as watch, ReadinessWatch(port) as ready:
                _under_load(cluster_env, now, plan)
                during = [t for t in watch.arrivals if marks["cut"] + 2 < t < marks["healed"]]
            assert not during, f"{len(during)} decisions appeared while the gate was cut off"
            assert gate.poll() is None, "the gate exited on its own during the partition"
        finally:
            stop(gate)
    assert ready.not_ready_within(marks["cut"], marks["healed"]), "ready while cut off 30 s"
    again = ready.ready_again_after(marks["healed"])
    assert again is not None, "never ready again after the partition healed"
    print(
        f"\npartition healed: first decision {watch.first_after(marks['healed'])} s after,"
        f" ready again {again:.1f} s after"
    )


def test_gate_cut_off_while_it_starts(kraft_cluster: Cluster, cluster_env: GateEnv) -> None:
    """The gate loses every broker (40 s) just as it initialises its transactions.

    Each start-up step waits for the cluster (an unbounded ``init_transactions``, or a global
    table's 30 s metadata wait, used to hang or end the process): once healed it starts, decides
    the load sent meanwhile exactly once, and was never ready while cut off.
    """
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    behind_proxy = _behind_proxy(cluster_env)
    marks: dict[str, float] = {}
    port = free_port()
    with PartitionableProxy() as proxy:
        gate = behind_proxy.gate_process("f7", metrics_port=port)

        def plan() -> None:
            wait_for_log(cluster_env, "f7", "initialising transactions", timeout_s=120)
            proxy.cut()
            marks["cut"] = time.monotonic()
            time.sleep(40)
            proxy.heal()
            marks["healed"] = time.monotonic()

        try:
            with ReadinessWatch(port) as ready:
                _under_load(cluster_env, now, plan, plan_timeout_s=240)
            assert gate.poll() is None, "the gate exited on its own while it started cut off"
        finally:
            stop(gate)
    assert not ready.ready_within(marks["cut"], marks["healed"]), "ready while cut off"
    again = ready.ready_again_after(marks["healed"])
    assert again is not None, "never ready after the partition healed"
    print(f"\ncut off while starting: ready {again:.1f} s after the partition healed")


def test_registry_restarted_under_load(kraft_cluster: Cluster, cluster_env: GateEnv) -> None:
    """The schema registry is SIGKILLed mid-load and started again 10 s later.

    Schemas are cached by id, so decisions go on; a schema the gate has not seen yet would wait
    for the registry (retried, never dead-lettered). The approved topic stays exact.
    """
    now = int(time.time() * 1000)
    seed_users(cluster_env, now)
    gate = cluster_env.gate_process("f6")
    stack = kraft_cluster.stack

    def plan() -> None:
        time.sleep(REQUESTS / RATE / 3)
        pid = stack.running_pid("registry")
        assert pid is not None, "the stack's registry is not running"
        os.killpg(pid, signal.SIGKILL)
        time.sleep(10)
        stack.up()  # starts what is missing: the registry

    try:
        _under_load(cluster_env, now, plan, flush_timeout_s=120, plan_timeout_s=240)
        dead = cluster_env.read(topics.TOPIC_DLQ, until=lambda r: False, timeout_s=3)
        assert not dead, f"{len(dead)} records dead-lettered during a registry restart"
        assert gate.poll() is None, "the gate exited on its own while the registry was down"
    finally:
        stop(gate)
