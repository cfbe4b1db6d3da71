"""A real :class:`StreamRunner` whose Kafka clients are test doubles: nothing is contacted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from streams.runtime import runner as runner_module
from streams.runtime.runner import RuntimeOptions, StreamRunner


def offline_runner(
    monkeypatch: pytest.MonkeyPatch,
    topology: Any,
    *,
    consumers: Callable[[], Any],
    producers: Callable[[], Any],
    metrics_prefix: str,
    topic_prefix: str = "",
    options: RuntimeOptions | None = None,
) -> StreamRunner[Any]:
    """Return a runner of ``topology`` whose every consumer and producer the callables make.

    The topics exist (one partition) and their metadata is there, so :meth:`StreamRunner.run`
    goes straight to its loop.
    """
    monkeypatch.setattr(runner_module, "group_consumer", lambda *args: consumers())
    monkeypatch.setattr(runner_module, "transactional_producer", lambda *args: producers())
    monkeypatch.setattr(runner_module, "wait_for_topics", lambda *args: 1)
    monkeypatch.setattr(runner_module, "wait_for_metadata", lambda *args: True)
    return StreamRunner(
        {"bootstrap.servers": "127.0.0.1:9"},  # never contacted: no client is built
        None,  # type: ignore[arg-type]
        topology,
        instance_id="i1",
        topic_prefix=topic_prefix,
        options=options or RuntimeOptions(),
        metrics_prefix=metrics_prefix,
    )
