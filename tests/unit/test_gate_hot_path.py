"""The gate's hot path changes nothing anyone can see: golden digests of the code before it.

The bench's workload (with erasures, late withdrawals, copies and requests ahead of their upload:
:mod:`bench.driver_profile`) runs through the real gate on the in-process driver; every output
record (bytes, key, partition, headers: decisions and their hash chain included), the changelog's
live state and the verdict mix must equal what the gate wrote before the hot-path work of #21
(``GOLDEN``, captured at b5a0369). The same holds with small transactions and a restart from the
changelog in the middle, and over RocksDB stores (no user cache, state read back from the store).
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
    "governance.decisions": "dbdca4d2b2b19be9f136b5db2579f506034d13de15510314b55b0e89d192a487",
    "governance.dlq": EMPTY,
    "governance.recalls": "2a3c8d61247e6badf383a3a30cdeda610e3097694d71350ae50d2a96956e7da3",
    "photo.share.approved": "80a260f1dddd54acc286d90212b598637a1e393be1a8d34c7d78ba1c141d09f8",
    "changelog_live_state": "9c27ba1f6654b69c53f7c7e62e4c1ffd08bd23396b41ecebcf5442c82a072a26",
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
