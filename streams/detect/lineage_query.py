"""``consentinel lineage``: which models used whose photos, from the audit trail.

Built from the allowed ``TRAINING_READ`` decisions in ``governance.decisions`` (each names its job
and, since ``Decision.model_id``, its model), so it answers the two questions an erasure or a
withdrawal raises: which models must be retrained or deleted for user U, and whose photos are
behind model M.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.core.times import iso_moment
from streams.detect.core.lineage import LineageIndex
from streams.detect.core.records import DecisionEvent
from streams.report.source import read_decisions
from streams.settings import Settings


def build_lineage(settings: Settings) -> LineageIndex:
    """Read every committed decision and index the allowed training reads."""
    log = read_decisions(
        settings,
        keep=lambda d: d["subject_kind"] == "TRAINING_READ" and d["verdict"] == "ALLOW",
    )
    index = LineageIndex()
    for record in log.records:
        event = DecisionEvent.from_record(record)
        if event.model_id is not None:
            index.note_job_model(event.actor, event.model_id, event.recipient_org)
        index.record(event)
    return index


def print_user(index: LineageIndex, user_id: str, say: Callable[[str], None] = print) -> int:
    """Print the models trained on a user's photos; return how many."""
    uses = index.models_for_user(user_id)
    if not uses:
        say(f"no model was trained on photos of {user_id} (no allowed training read)")
    for use in uses:
        model = use.model_id or f"unknown model (job {', '.join(use.jobs)})"
        say(
            f"{model}: org {use.org or '?'}, jobs {', '.join(use.jobs)}, {len(use.photos)} "
            f"photo(s), {iso_moment(use.first_at)} .. {iso_moment(use.last_at)} "
            "-> retrain or delete if the user withdraws or asks for erasure"
        )
    return len(uses)


def print_model(index: LineageIndex, model_id: str, say: Callable[[str], None] = print) -> int:
    """Print the users whose photos a model was trained on; return how many."""
    users = index.users_for_model(model_id)
    say(f"{model_id}: trained on photos of {len(users)} user(s)")
    for user in users:
        say(f"  {user}")
    return len(users)
