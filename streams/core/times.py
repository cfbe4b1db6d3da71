"""Conversions between datetimes, dates and the epoch milliseconds used on the wire."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)
DAY_MS = 86_400_000


def to_millis(moment: datetime) -> int:
    """Return ``moment`` as integer epoch milliseconds (a naive datetime is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - EPOCH) // _ONE_MS


def day_end_millis(day: date) -> int:
    """Return the first millisecond *after* ``day`` (UTC): ``day`` is valid while ``t <`` this."""
    return (day.toordinal() - _EPOCH_ORDINAL + 1) * DAY_MS


def iso_day(millis: int) -> str:
    """Return the UTC calendar day of ``millis`` as ``YYYY-MM-DD``."""
    return (EPOCH + timedelta(milliseconds=millis)).date().isoformat()


def iso_moment(millis: int) -> str:
    """Return ``millis`` as a UTC timestamp ``YYYY-MM-DDTHH:MM:SSZ`` (to the second)."""
    return (EPOCH + timedelta(milliseconds=millis)).strftime("%Y-%m-%dT%H:%M:%SZ")


_EPOCH_ORDINAL = EPOCH.date().toordinal()
