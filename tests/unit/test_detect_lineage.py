"""Lineage: which jobs and models used which users' photos, from allowed training reads."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.detect.core.lineage import LineageIndex
from streams.detect.core.records import DecisionEvent
from tests.unit.detect_support import T0, decision


def read(
    at: int,
    user: str,
    job: str,
    model: str | None = None,
    verdict: str = "ALLOW",
    photo: str | None = None,
) -> DecisionEvent:
    return decision(at, verdict=verdict, actor=job, owner=user, model_id=model, photo=photo)


def test_models_for_user_and_users_for_model() -> None:
    index = LineageIndex()
    assert index.record(read(T0, "alice", "job-1", "scene-v3", photo="a1"))
    assert index.record(read(T0 + 5, "alice", "job-1", "scene-v3", photo="a2"))
    assert index.record(read(T0 + 9, "alice", "job-2", "scene-v3", photo="a1"))
    assert index.record(read(T0 + 7, "bob", "job-3", "face-v1", photo="b1"))
    assert not index.record(read(T0, "carol", "job-1", "scene-v3", verdict="DENY"))
    assert not index.record(decision(T0, owner="dave", kind="SHARE"))

    [use] = index.models_for_user("alice")
    assert use.model_id == "scene-v3" and use.org == "acme-vision"
    assert use.jobs == ("job-1", "job-2") and use.photos == ("a1", "a2")
    assert (use.first_at, use.last_at) == (T0, T0 + 9)
    assert index.users_for_model("scene-v3") == ["alice"]
    assert index.users_for_model("face-v1") == ["bob"]
    assert index.models_for_user("carol") == [] and index.models_for_user("dave") == []
    assert index.users_for_model("nothing") == []


def test_model_learned_from_training_reads_before_or_after() -> None:
    index = LineageIndex()
    index.record(read(T0, "alice", "job-1"))
    index.record(read(T0, "alice", "job-9"))
    [unknown_1, unknown_9] = index.models_for_user("alice")
    assert unknown_1.model_id is None and unknown_1.jobs == ("job-1",)
    assert unknown_9.jobs == ("job-9",)
    index.note_job_model("job-1", "scene-v3")
    index.note_job_model("job-7", "scene-v3")
    index.record(read(T0 + 1, "bob", "job-7"))
    models = index.models_for_user("alice")
    assert [m.model_id for m in models] == ["scene-v3", None]
    assert index.users_for_model("scene-v3") == ["alice", "bob"]
    assert index.users_for_job("job-9") == ["alice"]


def test_round_trip() -> None:
    index = LineageIndex()
    index.record(read(T0, "alice", "job-1", "scene-v3", photo="a1"))
    index.record(read(T0, "bob", "job-2", photo="b1"))
    index.note_job_model("job-3", "face-v1", org="acme-vision")
    data = json.loads(json.dumps(index.to_dict()))
    again = LineageIndex.from_dict(data)
    assert again.to_dict() == index.to_dict()
    assert again.models_for_user("alice") == index.models_for_user("alice")
    assert again.users_for_model("scene-v3") == ["alice"]


reads = st.lists(
    st.tuples(
        st.sampled_from(["u1", "u2", "u3", "u4"]),
        st.sampled_from(["j1", "j2", "j3"]),
        st.booleans(),
    ),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(reads, st.dictionaries(st.sampled_from(["j1", "j2", "j3"]), st.sampled_from(["m1", "m2"])))
def test_queries_agree_with_each_other(
    events: list[tuple[str, str, bool]], models: dict[str, str]
) -> None:
    index = LineageIndex()
    for job, model in models.items():
        index.note_job_model(job, model)
    for i, (user, job, allowed) in enumerate(events):
        index.record(read(T0 + i, user, job, verdict="ALLOW" if allowed else "DENY"))
    expected = {(u, models.get(j)) for u, j, ok in events if ok}
    got = {(u, m.model_id) for u in ("u1", "u2", "u3", "u4") for m in index.models_for_user(u)}
    assert got == expected
    for model in ("m1", "m2"):
        assert index.users_for_model(model) == sorted({u for u, m in expected if m == model})
