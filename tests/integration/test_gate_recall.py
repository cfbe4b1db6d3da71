"""Erasure and recall (CONTRACT §3) end to end through the real broker, registry and gate.

- a withdrawal issues one ``RecallOrder`` per recipient that got photos under the withdrawn
  consent (photos, the recipient's models that read them, the decisions as evidence,
  ``due_at`` = ``issued_at`` + the recipient's ``recall_within_days``), none for a recipient that
  got nothing; a training read that was not allowed issues an order naming the model;
- an ``ACCOUNT`` erasure issues one order per recipient holding any of the user's photos, a
  ``PHOTO`` erasure one per recipient of that photo; later requests for them are
  ``DENY``/``ERASED``, and the photo index (in the gate's changelog) no longer names the user;
- an erasure never rewrites the decision log: ``consentinel audit verify`` with the signed chain
  heads still passes;
- a gate SIGKILLed in the middle of a burst of erasures, then restarted, neither loses nor doubles
  an order (``read_committed``).
"""

from __future__ import annotations

import signal
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from streams import cli, topics
from streams.core.checkpoint import generate_key_pair
from streams.core.partitioning import partition_for
from streams.core.recall import DAY_MS, RecallCause, order_id
from streams.gate.photos import ERASED_ENTRY
from tests.integration.harness import EXAMPLE_POLICY, GateEnv, content_hash, replay_policy

pytestmark = pytest.mark.integration

HOUR = 3_600_000
ACME_DAYS = 14  # acme-vision's recall_within_days in the example policy
DEFAULT_DAYS = 30  # the example policy's global recall_within_days (lovebird-partners has none)
NORTH_DAYS = 0.5

EXTRA_RECIPIENTS = f"""\
  north-lab:                     # a second AI vendor, with a deadline of its own
    agreement: {{id: DPA-2026-031, expires: "2027-12-31"}}
    purposes: [ML_TRAINING]
    recall_within_days: {NORTH_DAYS}
  idle-ai:                       # a vendor that never gets anything
    agreement: {{id: DPA-2026-032, expires: "2027-12-31"}}
    purposes: [ML_TRAINING]
"""


class Story:
    """Writes one test's events through the SDK, with fresh ids and times relative to ``now``."""

    def __init__(self, env: GateEnv, now: int) -> None:
        self.env = env
        self.now = now
        self.tag = uuid.uuid4().hex[:8]

    def user(self, name: str, photos: int, *, at: int = -5 * HOUR) -> tuple[str, list[str]]:
        owner = f"{name}-{self.tag}"
        ids = [f"{owner}-p{i}" for i in range(photos)]
        for photo in ids:
            self.env.producer.photo_uploaded(
                photo_id=photo,
                owner_id=owner,
                content_sha256=content_hash(photo),
                media_type="image/jpeg",
                size_bytes=1000,
                occurred_at=self.now + at,
            )
        return owner, ids

    def consent(self, owner: str, purpose: str, *, granted: bool = True, at: int) -> str:
        return self.env.producer.consent_changed(
            user_id=owner,
            purpose=purpose,
            granted=granted,
            categories=["IMAGE"] if granted else [],
            notice_version="2026-11",
            occurred_at=self.now + at,
        )

    def share(
        self,
        owner: str,
        photo: str,
        recipient: str,
        purpose: str = "ML_TRAINING",
        *,
        at: int,
        categories: tuple[str, ...] = ("IMAGE",),
    ) -> str:
        return self.env.producer.share_requested(
            photo_id=photo,
            owner_id=owner,
            requester="share-svc",
            recipient_org=recipient,
            purpose=purpose,
            categories=list(categories),
            occurred_at=self.now + at,
        )

    def read(self, owner: str, photo: str, org: str, model: str, *, at: int) -> str:
        return self.env.producer.training_read(
            job_id=f"job-{model}",
            model_id=model,
            org=org,
            photo_id=photo,
            owner_id=owner,
            purpose="ML_TRAINING",
            categories=["IMAGE"],
            occurred_at=self.now + at,
        )

    def erase(self, owner: str, photo: str | None = None, *, at: int) -> str:
        return self.env.producer.request_erasure(
            user_id=owner,
            scope="ACCOUNT" if photo is None else "PHOTO",
            photo_id=photo,
            reason="USER_REQUEST",
            occurred_at=self.now + at,
        )


def by_subject(decisions: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Decisions by the request they decide, checking each request got exactly one."""
    counts = Counter(d["subject_event_id"] for d in decisions)
    assert max(counts.values()) == 1, "a request got several decisions"
    return {d["subject_event_id"]: d for d in decisions}


def index_entries(env: GateEnv, keys: list[bytes]) -> dict[bytes, bytes | None]:
    """The latest changelog value of each photo index key, once all are erased (or in 30 s)."""

    def latest(messages: list[Any]) -> dict[bytes, bytes | None]:
        return {m.key(): m.value() for m in messages if m.key() in keys}

    def erased(messages: list[Any]) -> bool:
        return latest(messages) == dict.fromkeys(keys, ERASED_ENTRY)

    changelog = env.read(topics.TOPIC_GATE_CHANGELOG, until=erased, timeout_s=30, messages=True)
    return latest(changelog)


def orders_by_recipient(orders: list[dict[str, Any]], user: str) -> dict[str, dict[str, Any]]:
    """The user's orders by recipient, checking there is at most one per recipient."""
    mine = [o for o in orders if o["user_id"] == user]
    counts = Counter(o["recipient_org"] for o in mine)
    assert not mine or max(counts.values()) == 1, f"several orders to one recipient: {mine}"
    return {o["recipient_org"]: o for o in mine}


def assert_order(
    order: dict[str, Any],
    *,
    cause: RecallCause,
    photos: list[str],
    models: list[str],
    decisions: list[str],
    days: float,
    issued_between: tuple[int, int],
) -> None:
    assert order["cause"] == cause.value
    assert order["photo_ids"] == sorted(photos)
    assert order["model_ids"] == sorted(models)
    assert order["decision_ids"] == sorted(decisions)
    low, high = issued_between
    assert low <= order["issued_at"] <= high, "issued_at is the gate's clock at the trigger"
    assert order["due_at"] == order["issued_at"] + round(days * DAY_MS)


ARRIVALS = ["live", "backlog"]
"""``live``: the gate has decided the requests when the withdrawal or erasure arrives;
``backlog``: everything is already on the topics when the gate starts, and it must process the
inputs in event-time order (CONTRACT §3: a replayed backlog gets what it would have got live)."""


@pytest.mark.parametrize("arrival", ARRIVALS)
def test_withdrawal_recalls_from_each_recipient_that_got_photos_under_it(
    gate_env: GateEnv, arrival: str
) -> None:
    policy = replay_policy(EXAMPLE_POLICY.read_text() + EXTRA_RECIPIENTS)
    now = int(time.time() * 1000)
    s = Story(gate_env, now)
    user, (p0, p1, p2) = s.user("wendy", 3)
    s.consent(user, "ML_TRAINING", at=-4 * HOUR)
    to_acme = s.share(user, p0, "acme-vision", at=-3 * HOUR)
    acme_read = s.read(user, p1, "acme-vision", f"faceprint-{s.tag}", at=-3 * HOUR + 1000)
    to_north = s.share(user, p2, "north-lab", at=-3 * HOUR + 2000)
    to_idle = s.share(  # denied: nothing left to idle-ai, so it gets no order
        user, p0, "idle-ai", at=-3 * HOUR + 3000, categories=("IMAGE", "FACE_BIOMETRIC")
    )
    # another user: kept consent, so nothing of theirs is recalled
    keeper, (k0,) = s.user("keeper", 1)
    s.consent(keeper, "ML_TRAINING", at=-4 * HOUR)
    kept = s.share(keeper, k0, "acme-vision", at=-3 * HOUR)
    # a training read that was not allowed: the model read the photo anyway
    stranger, (x0,) = s.user("stranger", 1)
    unconsented = s.read(stranger, x0, "acme-vision", f"scraper-{s.tag}", at=-3 * HOUR)

    def withdraw() -> str:
        event_id = s.consent(user, "ML_TRAINING", granted=False, at=-HOUR)
        gate_env.producer.flush()
        return event_id

    withdrawal = withdraw() if arrival == "backlog" else ""
    gate_env.producer.flush()

    started = int(time.time() * 1000)
    with gate_env.gate_thread(policy=policy):
        decisions = by_subject(gate_env.read_exactly(topics.TOPIC_DECISIONS, 6))
        if arrival == "live":
            withdrawal = withdraw()
        messages = gate_env.read_messages(topics.TOPIC_RECALLS, 3)
        orders = gate_env.read_exactly(topics.TOPIC_RECALLS, 3)
        approved = gate_env.assert_approved()
    finished = int(time.time() * 1000)

    verdicts = {e: (d["verdict"], d["reason"]) for e, d in decisions.items()}
    assert verdicts == {
        to_acme: ("ALLOW", "CONSENTED"),
        acme_read: ("ALLOW", "CONSENTED"),
        to_north: ("ALLOW", "CONSENTED"),
        to_idle: ("DENY", "CATEGORY_NOT_CONSENTED"),
        kept: ("ALLOW", "CONSENTED"),
        unconsented: ("DENY", "NO_CONSENT"),
    }
    assert sorted(a["event_id"] for a in approved) == sorted([to_acme, to_north, kept])
    for message in messages:  # keyed by recipient, on murmur2(recipient)'s partition
        recipient = gate_env.codec.decode(message.topic(), message.value())["recipient_org"]
        assert message.key() == recipient.encode()
        assert message.partition() == partition_for(recipient.encode(), gate_env.partitions)

    window = (started, finished)
    withdrawn = orders_by_recipient(orders, user)
    assert set(withdrawn) == {"acme-vision", "north-lab"}, "none for idle-ai, which got nothing"
    assert_order(
        withdrawn["acme-vision"],
        cause=RecallCause.CONSENT_WITHDRAWN,
        photos=[p0, p1],
        models=[f"faceprint-{s.tag}"],
        decisions=[decisions[to_acme]["decision_id"], decisions[acme_read]["decision_id"]],
        days=ACME_DAYS,
        issued_between=window,
    )
    assert withdrawn["acme-vision"]["order_id"] == order_id(
        RecallCause.CONSENT_WITHDRAWN, withdrawal, "acme-vision"
    )
    assert_order(
        withdrawn["north-lab"],
        cause=RecallCause.CONSENT_WITHDRAWN,
        photos=[p2],
        models=[],
        decisions=[decisions[to_north]["decision_id"]],
        days=NORTH_DAYS,
        issued_between=window,
    )
    assert orders_by_recipient(orders, keeper) == {}
    (scraped,) = orders_by_recipient(orders, stranger).values()
    assert scraped["recipient_org"] == "acme-vision"
    assert_order(
        scraped,
        cause=RecallCause.UNCONSENTED_TRAINING,
        photos=[x0],
        models=[f"scraper-{s.tag}"],
        decisions=[decisions[unconsented]["decision_id"]],
        days=ACME_DAYS,
        issued_between=window,
    )


@pytest.mark.parametrize("arrival", ARRIVALS)
def test_account_and_photo_erasures_recall_and_deny_what_was_erased(
    gate_env: GateEnv, arrival: str
) -> None:
    now = int(time.time() * 1000)
    s = Story(gate_env, now)
    # anna: three photos, two of which left (to two recipients); then her account is erased
    anna, (a0, a1, a2) = s.user("anna", 3)
    s.consent(anna, "ML_TRAINING", at=-4 * HOUR)
    s.consent(anna, "PARTNER_SHARING", at=-4 * HOUR)
    a0_acme = s.share(anna, a0, "acme-vision", at=-3 * HOUR)
    a0_read = s.read(anna, a0, "acme-vision", f"faceprint-{s.tag}", at=-3 * HOUR + 1000)
    a1_love = s.share(anna, a1, "lovebird-partners", "PARTNER_SHARING", at=-3 * HOUR + 2000)
    # ben: two photos shared, one of them also read; then only that one is erased
    ben, (b0, b1) = s.user("ben", 2)
    s.consent(ben, "ML_TRAINING", at=-4 * HOUR)
    b0_acme = s.share(ben, b0, "acme-vision", at=-3 * HOUR)
    b1_acme = s.share(ben, b1, "acme-vision", at=-3 * HOUR + 1000)
    b0_read = s.read(ben, b0, "acme-vision", f"faceprint-{s.tag}", at=-3 * HOUR + 2000)
    # carl: nothing of his ever left, so erasing him recalls nothing
    carl, (c0,) = s.user("carl", 1)
    c0_denied = s.share(carl, c0, "acme-vision", at=-3 * HOUR)

    def erase() -> tuple[str, str]:
        account = s.erase(anna, at=-2 * HOUR)
        photo = s.erase(ben, b0, at=-2 * HOUR)
        s.erase(carl, at=-2 * HOUR)
        s.consent(anna, "ML_TRAINING", at=-2 * HOUR + 1000)  # after the erasure: ignored
        gate_env.producer.flush()
        return account, photo

    def ask_again() -> list[str]:
        asked = [
            s.share(anna, a0, "acme-vision", at=-HOUR),
            s.share(anna, a2, "lovebird-partners", "PARTNER_SHARING", at=-HOUR + 1000),
            s.share(ben, b0, "acme-vision", at=-HOUR),
            s.share(ben, b1, "acme-vision", at=-HOUR + 1000),
        ]
        gate_env.producer.flush()
        return asked

    if arrival == "backlog":
        account, photo = erase()
        after_a0, after_a2, after_b0, after_b1 = ask_again()
    gate_env.producer.flush()

    started = int(time.time() * 1000)
    with gate_env.gate_thread():
        if arrival == "live":
            gate_env.read_exactly(topics.TOPIC_DECISIONS, 7)
            account, photo = erase()
            gate_env.read_exactly(topics.TOPIC_RECALLS, 3)
            after_a0, after_a2, after_b0, after_b1 = ask_again()
        decisions = by_subject(gate_env.read_exactly(topics.TOPIC_DECISIONS, 11))
        orders = gate_env.read_exactly(topics.TOPIC_RECALLS, 3)
        erased_keys = [
            f"I:{kind}".encode()
            for photo in (a0, a1, a2, b0, c0)
            for kind in (f"id:{photo}", f"sha:{content_hash(photo)}")
        ]
        index = index_entries(gate_env, erased_keys)
        approved = gate_env.assert_approved()
    window = (started, int(time.time() * 1000))
    assert index == dict.fromkeys(erased_keys, ERASED_ENTRY), "the index forgot the erased users"

    verdicts = {e: (d["verdict"], d["reason"]) for e, d in decisions.items()}
    assert verdicts == {
        a0_acme: ("ALLOW", "CONSENTED"),
        a0_read: ("ALLOW", "CONSENTED"),
        a1_love: ("ALLOW", "CONSENTED"),
        after_a0: ("DENY", "ERASED"),
        after_a2: ("DENY", "ERASED"),
        b0_acme: ("ALLOW", "CONSENTED"),
        b1_acme: ("ALLOW", "CONSENTED"),
        b0_read: ("ALLOW", "CONSENTED"),
        after_b0: ("DENY", "ERASED"),
        after_b1: ("ALLOW", "CONSENTED"),
        c0_denied: ("DENY", "NO_CONSENT"),
    }
    assert "erased" in decisions[after_a0]["explanation"]
    assert sorted(a["event_id"] for a in approved) == sorted(
        [a0_acme, a1_love, b0_acme, b1_acme, after_b1]
    ), "an erased photo never leaves again"

    def id_of(event: str) -> str:
        return str(decisions[event]["decision_id"])

    erased_account = orders_by_recipient(orders, anna)
    assert set(erased_account) == {"acme-vision", "lovebird-partners"}
    assert_order(
        erased_account["acme-vision"],
        cause=RecallCause.ERASURE_REQUESTED,
        photos=[a0],
        models=[f"faceprint-{s.tag}"],
        decisions=[id_of(a0_acme), id_of(a0_read)],
        days=ACME_DAYS,
        issued_between=window,
    )
    assert_order(
        erased_account["lovebird-partners"],
        cause=RecallCause.ERASURE_REQUESTED,
        photos=[a1],
        models=[],
        decisions=[id_of(a1_love)],
        days=DEFAULT_DAYS,
        issued_between=window,
    )
    assert {o["order_id"] for o in erased_account.values()} == {
        order_id(RecallCause.ERASURE_REQUESTED, account, org)
        for org in ("acme-vision", "lovebird-partners")
    }
    (erased_photo,) = orders_by_recipient(orders, ben).values()
    assert erased_photo["recipient_org"] == "acme-vision"
    assert erased_photo["order_id"] == order_id(RecallCause.ERASURE_REQUESTED, photo, "acme-vision")
    assert_order(
        erased_photo,
        cause=RecallCause.ERASURE_REQUESTED,
        photos=[b0],
        models=[f"faceprint-{s.tag}"],
        decisions=[id_of(b0_acme), id_of(b0_read)],
        days=ACME_DAYS,
        issued_between=window,
    )
    assert orders_by_recipient(orders, carl) == {}


def test_audit_verify_passes_after_erasures(
    gate_env: GateEnv,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    private, public, _ = generate_key_pair(tmp_path / "keys")
    monkeypatch.setenv("CONSENTINEL_SIGNING_KEY", str(private))
    now = int(time.time() * 1000)
    s = Story(gate_env, now)
    users = [s.user(f"user{i}", 2, at=-2 * HOUR) for i in range(6)]
    requests = []
    for n, (owner, photos) in enumerate(users):
        s.consent(owner, "ML_TRAINING", at=-HOUR)
        requests += [s.share(owner, p, "acme-vision", at=-30 * 60_000 + n) for p in photos]
    gate_env.producer.flush()

    with gate_env.gate_thread():
        before = gate_env.read_exactly(topics.TOPIC_DECISIONS, len(requests))
        (anna, anna_photos), (ben, ben_photos) = users[0], users[1]
        s.erase(anna, at=0)
        s.erase(ben, ben_photos[0], at=1)
        gate_env.producer.flush()
        orders = gate_env.read_exactly(topics.TOPIC_RECALLS, 2)
        denied = s.share(anna, anna_photos[1], "acme-vision", at=2)
        gate_env.producer.flush()
        after = gate_env.read_exactly(topics.TOPIC_DECISIONS, len(requests) + 1)
        per_partition = Counter(partition_for(d["owner_id"], gate_env.partitions) for d in after)

        def signed_to_the_end(checkpoints: list[dict[str, Any]]) -> bool:
            heads = Counter[int]()
            for c in checkpoints:
                heads[c["partition"]] = max(heads[c["partition"]], c["decisions"])
            return all(heads[p] == n for p, n in per_partition.items())

        checkpoints = gate_env.read(topics.TOPIC_CHECKPOINTS, until=signed_to_the_end, timeout_s=30)
        approved = gate_env.assert_approved()
    assert sorted(a["event_id"] for a in approved) == sorted(requests), "the denied one stays"
    assert signed_to_the_end(checkpoints), "every partition's head is signed within 10 s"
    assert {o["user_id"] for o in orders} == {anna, ben}
    assert next(d for d in after if d["subject_event_id"] == denied)["reason"] == "ERASED"

    # the decisions about the erased users are still there, byte for byte as they were chained
    kept = {d["decision_id"]: d for d in after}
    assert all(kept[d["decision_id"]] == d for d in before)
    assert {anna, ben} <= {d["owner_id"] for d in after}

    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", gate_env.settings.kafka_bootstrap_servers)
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", gate_env.settings.schema_registry_url)
    monkeypatch.setenv("CONSENTINEL_TOPIC_PREFIX", gate_env.prefix)
    monkeypatch.setenv("CONSENTINEL_VERIFY_KEY", str(public))
    capsys.readouterr()
    assert cli.main(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "checkpoint signatures verified with key ed25519:" in out
    assert f"every chain is intact: {len(requests) + 1} decisions" in out
    for partition in per_partition:
        line = next(x for x in out.splitlines() if x.startswith(f"partition {partition}:"))
        assert "intact" in line and ", 0 checkpoint(s)" not in line, line


ERASED_USERS = 300


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        process.wait(60)


@pytest.mark.slow
def test_sigkill_mid_erasure_burst_loses_and_doubles_no_order(gate_env: GateEnv) -> None:
    now = int(time.time() * 1000)
    s = Story(gate_env, now)
    owners = []
    for u in range(ERASED_USERS):
        owner, (photo,) = s.user(f"burst{u:03d}", 1, at=-2 * HOUR)
        s.consent(owner, "ML_TRAINING", at=-HOUR)
        s.share(owner, photo, "acme-vision", at=-30 * 60_000 + u)
        owners.append(owner)
    gate_env.producer.flush()

    gates = [gate_env.gate_process("crash")]
    try:
        allowed = gate_env.read_exactly(topics.TOPIC_DECISIONS, ERASED_USERS, timeout_s=120)
        assert {d["verdict"] for d in allowed} == {"ALLOW"}
        expected = set()
        began = time.monotonic()
        for n, owner in enumerate(owners):
            erasure = s.erase(owner, at=n)
            expected.add(order_id(RecallCause.ERASURE_REQUESTED, erasure, "acme-vision"))
            if n == ERASED_USERS // 3:
                gate_env.producer.flush()
                stop(gates[-1], signal.SIGKILL)  # no chance to commit or abort anything
            if n == ERASED_USERS // 3 + 50:
                gates.append(gate_env.gate_process("crash"))
            ahead = (n + 1) / 150 - (time.monotonic() - began)  # 150 erasures a second
            if ahead > 0:
                time.sleep(ahead)
        gate_env.producer.flush()
        orders = gate_env.read_exactly(topics.TOPIC_RECALLS, ERASED_USERS, timeout_s=180)
        approved = gate_env.assert_approved(timeout_s=180)
    finally:
        for gate in gates:
            stop(gate)
    assert len(approved) == ERASED_USERS, "each user's share left once, before the erasure"
    assert gates[0].returncode == -signal.SIGKILL
    counts = Counter(o["order_id"] for o in orders)
    assert not set(expected) - set(counts), f"{len(set(expected) - set(counts))} orders lost"
    doubled = {k: v for k, v in counts.items() if v > 1}
    assert not doubled, f"{len(doubled)} orders written twice"
    assert set(counts) == expected
