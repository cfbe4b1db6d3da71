"""``RECALL_OVERDUE``: one alert per recipient, cause and deadline, not one per order (§5). Pure.

An order not fully acknowledged by its ``due_at`` (:meth:`~streams.detect.core.recall_overdue.
RecallTracker.overdue` hands each such order over exactly once) joins the *group* of its
recipient, cause and deadline. The deadline is the UTC calendar day of ``due_at``: the orders of
one erasure wave or one training job, issued over minutes or hours, share one deadline, so an
analyst gets one alert for 4,000 orders, not 4,000 alerts.

The group's alert (:func:`group_alert`) has a deterministic id (recipient, cause, deadline), so a
replay after a crash writes the same alert; ``observed`` is the count of overdue orders,
``sample_event_ids`` the first :data:`SAMPLE_ORDERS` order ids, the summary what is still to
delete. It is raised (revision 0) when the group's first order goes overdue. Orders that join the
group later make it *dirty*: an update (same ``alert_id``, ``revision`` + 1, the new count) is
published at most every :data:`UPDATE_INTERVAL_MS`, so a group growing by one order per second
does not flood either. Groups are JSON-able (:meth:`OverdueGroup.to_json`) for the changelog.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.core.times import iso_day, iso_moment
from streams.detect.core.recall_overdue import OpenOrder
from streams.detect.core.records import Alert, AlertAction, AlertKind, Severity, stable_id

SAMPLE_ORDERS = 10
"""How many order ids an alert names."""

UPDATE_INTERVAL_MS = 10_000
"""At most one update of a group's alert per this many milliseconds of the detector's clock."""


def group_key(tracked: OpenOrder) -> str:
    """Return the group of an order: recipient, cause and deadline (UTC day of ``due_at``)."""
    order = tracked.order
    return f"{order.recipient_org}\x1f{order.cause.value}\x1f{iso_day(order.due_at)}"


@dataclass(slots=True)
class OverdueGroup:
    """The overdue orders of one recipient, cause and deadline day."""

    recipient: str
    cause: str
    deadline: str
    orders: int = 0
    photos: int = 0
    models: int = 0
    partly: int = 0
    first_due: int | None = None
    last_due: int | None = None
    samples: list[str] = field(default_factory=list)
    revision: int = -1
    """-1 until the alert is raised; then the revision last published."""
    published_at: int | None = None
    dirty: bool = False

    @property
    def alert_id(self) -> str:
        """The group's alert id: a function of recipient, cause and deadline only."""
        return stable_id(AlertKind.RECALL_OVERDUE.value, self.recipient, self.cause, self.deadline)

    def add(self, tracked: OpenOrder) -> None:
        """Count one order that went overdue (each order is given once)."""
        order = tracked.order
        self.orders += 1
        self.photos += len(tracked.missing_photos)
        self.models += len(tracked.missing_models)
        self.partly += tracked.last_ack_at is not None
        due = order.due_at
        self.first_due = due if self.first_due is None else min(self.first_due, due)
        self.last_due = due if self.last_due is None else max(self.last_due, due)
        if len(self.samples) < SAMPLE_ORDERS and order.order_id not in self.samples:
            self.samples.append(order.order_id)
        self.dirty = True

    def to_json(self) -> dict[str, Any]:
        """Return the stored form."""
        return {
            "r": self.recipient,
            "c": self.cause,
            "d": self.deadline,
            "n": [self.orders, self.photos, self.models, self.partly],
            "due": [self.first_due, self.last_due],
            "s": self.samples,
            "rev": self.revision,
            "pub": self.published_at,
            "dirty": self.dirty,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> OverdueGroup:
        """Rebuild from :meth:`to_json`."""
        orders, photos, models, partly = data["n"]
        first, last = data["due"]
        return cls(
            str(data["r"]),
            str(data["c"]),
            str(data["d"]),
            int(orders),
            int(photos),
            int(models),
            int(partly),
            first,
            last,
            [str(s) for s in data["s"]],
            int(data["rev"]),
            data["pub"],
            bool(data["dirty"]),
        )


class OverdueGroups:
    """The groups of one detector partition; turns newly overdue orders into alerts."""

    __slots__ = ("groups",)

    def __init__(self) -> None:
        self.groups: dict[str, OverdueGroup] = {}

    def add(self, overdue: Iterable[OpenOrder]) -> set[str]:
        """Count newly overdue orders into their groups; return the keys of the groups changed."""
        changed = set()
        for tracked in overdue:
            key = group_key(tracked)
            group = self.groups.get(key)
            if group is None:
                order = tracked.order
                recipient, cause, deadline = key.split("\x1f")
                group = self.groups[key] = OverdueGroup(recipient, cause, deadline)
                assert (recipient, cause) == (order.recipient_org, order.cause.value)
            group.add(tracked)
            changed.add(key)
        return changed

    def publish(self, now_ms: int) -> list[tuple[str, Alert]]:
        """Return ``(group key, alert)`` for each dirty group due to be (re)published at ``now``.

        A group never raised is raised now (revision 0); a raised one gets an update when
        :data:`UPDATE_INTERVAL_MS` passed since its last publication. The caller saves the
        returned groups with the alerts, in one transaction.
        """
        out = []
        for key in sorted(self.groups):
            group = self.groups[key]
            if not group.dirty:
                continue
            if group.published_at is not None and now_ms - group.published_at < UPDATE_INTERVAL_MS:
                continue
            group.revision += 1
            group.published_at = now_ms
            group.dirty = False
            out.append((key, group_alert(group, now_ms)))
        return out


def group_alert(group: OverdueGroup, raised_at_ms: int) -> Alert:
    """Return the ``RECALL_OVERDUE`` alert (or update) of a group (subject: the recipient).

    ``window_start``/``window_end`` are the earliest and latest ``due_at`` of its orders;
    ``observed`` the count of overdue orders, ``threshold`` 0 (any is overdue);
    ``sample_event_ids`` the first order ids.
    """
    assert group.first_due is not None and group.last_due is not None
    what = []
    if group.photos:
        what.append(f"{group.photos:,} photo(s)")
    if group.models:
        what.append(f"{group.models:,} model purge(s)")
    partly = f", {group.partly:,} of them partly acknowledged" if group.partly else ""
    samples = ", ".join(group.samples[:3])
    more = ", ..." if group.orders > 3 else ""
    return Alert(
        alert_id=group.alert_id,
        raised_at=raised_at_ms,
        kind=AlertKind.RECALL_OVERDUE,
        severity=Severity.CRITICAL,
        subject=group.recipient,
        window_start=group.first_due,
        window_end=group.last_due,
        observed=group.orders,
        threshold=0.0,
        baseline=None,
        summary=(
            f"{group.recipient} has {group.orders:,} {group.cause} recall order(s) due"
            f" {group.deadline} (between {iso_moment(group.first_due)} and"
            f" {iso_moment(group.last_due)}) not fully acknowledged{partly}:"
            f" {' and '.join(what) or 'nothing'} still to delete when they went overdue"
            f" (orders {samples}{more}); chase the recipient or escalate to its DPA contact."
        ),
        sample_event_ids=tuple(group.samples),
        action=AlertAction.NONE,
        revision=group.revision,
    )
