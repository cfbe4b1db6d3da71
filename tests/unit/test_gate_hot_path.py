"""The gate's hot path changes nothing anyone can see: golden digests of the code before it.

The bench's workload (with erasures, late withdrawals, copies and requests ahead of their upload:
:mod:`bench.driver_profile`) runs through the real gate on the in-process driver; every output
record (bytes, key, partition, headers: decisions and their hash chain included), the changelog's
live state and the verdict mix must equal what the gate wrote before the hot-path work of #21
(``GOLDEN``, captured at b5a0369). The same holds with small transactions and a restart from the
changelog in the middle, and over RocksDB stores (no user cache, state read back from the store).

Re-captured once, when a request for a photo the index does not know began to wait for a later
upload (#20): every decision's fields other than its chain hashes were shown equal, request by
request, to b5a0369's; their order on the chain, and so the hashes, changed. The changelog's
live state lost only the 13 ``x:`` keys of photos never uploaded, once a request stopped waiting
for them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.driver_profile import POLICY, digests, loaded_driver, run_all
from streams.runtime.options import RuntimeOptions
from streams.testing.topologies import gate_driver

EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
GOLDEN: dict[str, Any] = {
    "governance.alerts": "2c970b90dd3acad389f42cd3e93bb6ab50dfc4664f0324fe55291c96e83f99c4",
    "governance.checkpoints": EMPTY,
    "governance.decisions": "620623ccc4f350c4ca0189d9ef6a500e6f99a621f74df08d76c38bf4d7577035",
    "governance.dlq": EMPTY,
    "governance.recalls": "2a3c8d61247e6badf383a3a30cdeda610e3097694d71350ae50d2a96956e7da3",
    "photo.share.approved": "b30daad82edd5d136af6b2243f7366e333f24882bddeb1f1c8e17d2102392a41",
    "changelog_live_state": "9a7b38b8ddb685f48bcc85e15fd020063c92c1bcf982120a5d032653e51571bf",
    "verdicts": {
        "ALLOW/CONSENTED": 479,
        "ALLOW/NOT_CONSENT_BASED": 199,
        "DENY/CATEGORY_NOT_CONSENTED": 70,
        "DENY/CONSENT_EXPIRED": 37,
        "DENY/CONSENT_REVOKED": 55,
        "DENY/ERASED": 78,
        "DENY/NO_AGREEMENT": 40,
        "DENY/NO_CONSENT": 628,
        "DENY/OWNER_MISMATCH": 17,
        "DENY/PURPOSE_NOT_PERMITTED": 11,
        "DENY/RECIPIENT_UNKNOWN": 23,
        "DENY/UNKNOWN_PHOTO": 13,
    },
    "dead_letters": {},
}
REQUESTS, USERS, PARTITIONS = 1500, 150, 4


@pytest.fixture(autouse=True)
def _quiet() -> Iterator[None]:
    logging.disable(logging.WARNING)  # thousands of OWNER_MISMATCH warnings, by design
    yield
    logging.disable(logging.NOTSET)


def test_the_bench_workload_gives_the_golden_records() -> None:
    driver, _, late = loaded_driver(REQUESTS, USERS, partitions=PARTITIONS)
    run_all(driver, late)
    assert digests(driver) == GOLDEN


def test_small_transactions_and_a_restart_give_the_golden_records() -> None:
    options = RuntimeOptions(batch_max_events=97)
    driver, _, late = loaded_driver(REQUESTS, USERS, partitions=PARTITIONS, options=options)
    driver.run(max_turns=9)
    assert driver.commits > 0
    driver.close()
    restarted = gate_driver(POLICY, restore_from=driver)
    run_all(restarted, late)
    assert digests(restarted) == GOLDEN


def test_rocksdb_stores_give_the_golden_records(tmp_path: Path) -> None:
    options = RuntimeOptions(batch_max_events=97, state_store="rocksdb", state_dir=tmp_path)
    driver, _, late = loaded_driver(REQUESTS, USERS, partitions=PARTITIONS, options=options)
    try:
        run_all(driver, late)
        assert digests(driver) == GOLDEN
    finally:
        driver.close()
