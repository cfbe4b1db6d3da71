"""The runner's one loop, run in memory: local loopback, the commit cadence, flow control, and
failures at produce and commit time taking the runner's paths (no timed assertions: the driver's
clock moves only when told)."""

from __future__ import annotations

import pytest

from streams import topics
from streams.errors import TransientError
from streams.runtime.checkpoint import RuntimeFatalError
from streams.runtime.options import RuntimeOptions
from streams.runtime.testing import InjectedFailure, TopologyDriver
from streams.runtime.transaction import TransactionState
from streams.testing.topologies import gate_driver
from tests.unit.gate_stories import STORIES, Writer, decisions_by_subject
from tests.unit.test_runtime_driver import LEFT, LOOP, RIGHT, Toy, echoes, toy


def values(driver: TopologyDriver[Toy]) -> list[str]:
    """Return the input value each committed echo came from, in commit order."""
    return [echo.split(":")[1] for echo in echoes(driver)]


def test_local_loopback_processes_an_internal_record_at_once_in_the_same_transaction() -> None:
    driver = toy(partitions=1)  # the default options: local loopback on, as in production
    driver.feed(RIGHT, "k", b"30")
    driver.feed(LEFT, "k", b"20")
    driver.feed(RIGHT, "k", b"10")
    assert driver.run() == 1, "one transaction holds the input and what it looped back"
    assert echoes(driver) == [
        "in.left:b'20':1:0",
        "toy.loop:b'20':2:0",  # processed right after its cause, never written to the broker
        "in.right:b'30':3:0",
        "in.right:b'10':4:0",
    ]
    assert driver.records(LOOP) == []
    assert driver.changelog(0)[-1] == (b"k", b"4")


def test_the_gate_decides_the_same_with_its_photo_index_looped_back_or_over_the_broker() -> None:
    found = {}
    for loopback in (True, False):
        driver = gate_driver(options=RuntimeOptions(local_loopback=loopback))
        writer = Writer(driver)
        for story in STORIES:
            writer.story(story, driver.clock())
        driver.run()
        driver.advance(3_000)  # past the grace of the request for a photo nobody uploaded
        claims = driver.records(topics.TOPIC_GATE_PHOTO_CLAIMS)
        assert bool(claims) is not loopback, "claims cross the broker only without loopback"
        found[loopback] = {
            subject: [(d["verdict"], d["reason"]) for d in decisions]
            for subject, decisions in decisions_by_subject(driver).items()
        }
    assert found[True] == found[False]
    assert len(found[True]) >= len(STORIES)


def six(options: RuntimeOptions) -> TopologyDriver[Toy]:
    driver = toy(options=options)
    for time in range(1, 7):
        driver.feed(RIGHT, f"k{time % 2}", str(time).encode())
    return driver


def committed(driver: TopologyDriver[Toy]) -> tuple[list[str], list[object]]:
    return echoes(driver), [driver.changelog(p) for p in range(driver.partitions)]


@pytest.fixture
def reference() -> tuple[list[str], list[object]]:
    driver = six(RuntimeOptions(batch_max_events=2))
    driver.run()
    return committed(driver)


@pytest.mark.parametrize("error", [InjectedFailure("producer failed"), TransientError("down")])
def test_a_produce_failure_takes_the_runners_path(
    error: Exception, reference: tuple[list[str], list[object]]
) -> None:
    driver = six(RuntimeOptions(batch_max_events=2))
    assert driver.run(max_turns=1) == 1
    before = committed(driver)
    driver.fail_produce(after=1, error=error)
    if isinstance(error, TransientError):
        driver.run()  # aborted, rewound and retried, as the runner retries it
    else:
        with pytest.raises(InjectedFailure):
            driver.run()  # the process ends
        assert committed(driver) == before, "nothing of the failed transaction shows"
        driver.run()  # the restarted process redoes it from the last commit
    assert driver.aborts == 1
    assert committed(driver) == reference


def test_a_commit_the_broker_refuses_is_aborted_and_redone(
    reference: tuple[list[str], list[object]],
) -> None:
    driver = six(RuntimeOptions(batch_max_events=2))
    assert driver.run(max_turns=1) == 1
    driver.fail_commit()
    driver.run()
    assert driver.aborts == 1
    assert committed(driver) == reference


def test_a_fatal_commit_failure_ends_the_process_and_its_restart_redoes_the_work(
    reference: tuple[list[str], list[object]],
) -> None:
    driver = six(RuntimeOptions(batch_max_events=2))
    assert driver.run(max_turns=1) == 1
    before = committed(driver)
    driver.fail_commit(RuntimeFatalError("fenced"))
    with pytest.raises(RuntimeFatalError):
        driver.run()
    assert committed(driver) == before
    driver.run()
    assert committed(driver) == reference


def test_a_transaction_stays_open_until_commit_interval_ms_of_the_clock() -> None:
    driver = toy(partitions=1, options=RuntimeOptions(commit_interval_ms=500))
    driver.feed(RIGHT, "k", b"1")
    assert driver.run() == 0
    driver.feed(RIGHT, "k", b"2")
    assert driver.run() == 0
    assert echoes(driver) == [] and driver.loop.txn.state is TransactionState.OPEN
    assert driver.advance(499) == 0
    assert driver.advance(1) == 1, "both inputs, one transaction"
    assert values(driver) == ["b'1'", "b'2'"]
    assert driver.loop.txn.state is TransactionState.IDLE


def test_a_transaction_open_past_its_timeout_is_aborted_by_the_broker_and_redone() -> None:
    options = RuntimeOptions(commit_interval_ms=2_000, transaction_timeout_ms=1_000)
    driver = toy(partitions=1, options=options)
    driver.feed(RIGHT, "k", b"1")
    driver.run()
    assert driver.advance(2_000) == 0
    assert driver.aborts == 1 and echoes(driver) == []
    assert driver.loop.txn.state is TransactionState.OPEN, "the input is processed again"
    assert driver.loop.txn.events == 1


def test_flow_control_pauses_a_source_whose_merge_buffer_is_full_and_resumes_it() -> None:
    driver = toy(partitions=1, options=RuntimeOptions(pause_above=3, resume_below=1))
    driver.hold(LEFT)  # the merge waits for the left record it knows is on the broker
    driver.feed(LEFT, "k", b"1")
    for time in range(2, 8):
        driver.feed(RIGHT, "k", str(time).encode())
    driver.run()
    assert echoes(driver) == []
    assert (RIGHT, 0) in driver.consumer.paused
    driver.feed(RIGHT, "k", b"8")  # stays on the broker while its partition is paused
    driver.release(LEFT)
    driver.run()
    assert (RIGHT, 0) not in driver.consumer.paused
    assert values(driver) == ["b'1'", "b'1'", *(f"b'{time}'" for time in range(2, 9))]


def test_an_internal_topic_that_is_looped_back_cannot_be_held() -> None:
    driver = toy(partitions=1)
    with pytest.raises(ValueError, match="local_loopback"):
        driver.hold(LOOP)
    toy(partitions=1, options=RuntimeOptions(local_loopback=False)).hold(LOOP)
