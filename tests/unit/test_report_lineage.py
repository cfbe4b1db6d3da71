"""The auditor's lineage: every training read, allowed or not, by user and by model."""

from __future__ import annotations

from typing import Any

from streams.report.lineage import AuditLineage, Read, print_model, print_user


def decision(
    d: str, owner: str, photo: str, job: str, model: str | None, verdict: str = "ALLOW", **kw: Any
) -> dict[str, Any]:
    return {
        "decision_id": d,
        "decided_at": 1_764_000_000_000,
        "occurred_at": 1_764_000_000_000 + int(d[1:]),
        "subject_kind": "TRAINING_READ",
        "owner_id": owner,
        "photo_id": photo,
        "actor": job,
        "recipient_org": "acme-vision",
        "model_id": model,
        "verdict": verdict,
        "reason": "CONSENTED" if verdict == "ALLOW" else "NO_CONSENT",
        **kw,
    }


RECORDS = [
    decision("d1", "u1", "p1", "j1", "m1"),
    decision("d2", "u1", "p2", "j1", None, verdict="DENY"),  # model learned from d1's job
    decision("d3", "u2", "p3", "j1", "m1", verdict="HOLD"),
    decision("d4", "u1", "p4", "j9", None, verdict="DENY"),  # job of unknown model
    decision("d5", "u2", "p5", "j2", "m2"),
    {**decision("d6", "u1", "p1", "share-svc", None), "subject_kind": "SHARE"},
]


def lineage() -> AuditLineage:
    return AuditLineage(r for r in map(Read.from_record, RECORDS) if r is not None)


def test_every_training_read_is_kept_whatever_its_verdict() -> None:
    index = lineage()
    assert sorted(r.decision_id for r in index.reads) == ["d1", "d2", "d3", "d4", "d5"]
    assert not index.add(Read.from_record(RECORDS[0]))  # type: ignore[arg-type]


def test_models_for_user_split_allowed_and_not_allowed() -> None:
    uses = lineage().models_for_user("u1")
    assert [(u.model_id, u.jobs) for u in uses] == [("m1", ("j1",)), (None, ("j9",))]
    m1 = uses[0]
    assert [r.decision_id for r in m1.allowed] == ["d1"]
    assert [(r.decision_id, r.verdict, r.reason) for r in m1.not_allowed] == [
        ("d2", "DENY", "NO_CONSENT")
    ]
    assert [r.decision_id for r in uses[1].not_allowed] == ["d4"]


def test_users_for_model_include_reads_that_were_not_allowed() -> None:
    users = lineage().users_for_model("m1")
    assert list(users) == ["u1", "u2"]
    assert [r.decision_id for r in users["u2"].not_allowed] == ["d3"]
    assert lineage().users_for_model("nope") == {}


def test_printed_report_says_which_reads_were_not_allowed() -> None:
    lines: list[str] = []
    assert print_user(lineage(), "u1", lines.append) == 2
    text = "\n".join(lines)
    assert "m1: org acme-vision, jobs j1: 2 read(s), 1 allowed, 1 NOT allowed" in text
    assert "NOT ALLOWED p2" in text and "DENY/NO_CONSENT (decision d2)" in text
    assert "unknown model (job j9)" in text and "unconsented training" in text
    lines.clear()
    assert print_model(lineage(), "m1", lines.append) == 2
    assert lines[0] == "m1: read photos of 2 user(s); 2 of them with reads that were NOT allowed"
    assert any("HOLD/NO_CONSENT (decision d3)" in line for line in lines)
    lines.clear()
    assert print_user(lineage(), "nobody", lines.append) == 0
    assert "no training job read photos of nobody" in lines[0]
