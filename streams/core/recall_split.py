"""Recall orders that fit in one Kafka record: an order too large is split, never lost (§3).

An ``ACCOUNT`` erasure of a user with many shares can name more photos and decisions than one
record may hold (the runtime's ``max_output_bytes``, 900 KiB by default; Kafka's
``message.max.bytes``, 1 MiB). An output over the limit would be dead-lettered in place of the
order, so no order would reach the recipient. :func:`split_order` cuts such an order into parts
of at most ``max_bytes`` (an upper bound of the Avro body, :func:`encoded_bound`), each naming a
subset of the photos with the decisions that let those photos out and the models that read them,
with the same cause, recipient, user, ``issued_at`` and ``due_at``. Together the parts name every
photo, decision and model of the order. The first part keeps the order's id; part ``i`` > 0 gets
``order_id(cause, "<trigger>#<i>", recipient)``, so a replay issues the same parts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace

from streams.core.recall_model import RecallOrder

MAX_ORDER_BYTES = 512 * 1024
"""The largest RecallOrder body the gate writes: well under the 900 KiB output limit."""

_STRING_OVERHEAD = 5
"""Avro writes a string as a varint length (at most 5 bytes here) and the UTF-8 bytes."""


def _cost(text: str) -> int:
    return len(text.encode("utf-8")) + _STRING_OVERHEAD


def encoded_bound(order: RecallOrder) -> int:
    """Return an upper bound of the order's encoded size (Confluent prefix and Avro body)."""
    fixed = 5 + 3 * 10 + 3 * 11  # wire prefix, two longs and the enum, three array framings
    strings = [order.order_id, order.recipient_org, order.user_id]
    return (
        fixed
        + sum(map(_cost, strings))
        + sum(map(_cost, order.photo_ids))
        + sum(map(_cost, order.model_ids))
        + sum(map(_cost, order.decision_ids))
    )


def split_order(
    order: RecallOrder,
    decisions_of: Mapping[str, Iterable[str]],
    models_of: Mapping[str, Iterable[str]],
    part_id: Callable[[int], str],
    max_bytes: int = MAX_ORDER_BYTES,
) -> list[RecallOrder]:
    """Return ``[order]`` if it fits in ``max_bytes``, else parts that each fit.

    ``decisions_of``/``models_of`` map each photo of the order to the decisions that let it out
    and the models that read it; ``part_id(i)`` is the id of part ``i`` > 0. A part holds whole
    (photo, decision) pairs, so a photo with more decisions than fit in one part spans parts.
    """
    if encoded_bound(order) <= max_bytes:
        return [order]
    empty = replace(order, photo_ids=(), model_ids=(), decision_ids=())
    base = encoded_bound(empty) + 40  # a part id may be longer than the order's
    parts: list[tuple[list[str], list[str], list[str]]] = []
    photos: list[str] = []
    decisions: list[str] = []
    models: list[str] = []
    size = base
    pairs = [(p, d) for p in order.photo_ids for d in sorted(decisions_of.get(p, ())) or [""]]
    for photo, decision in pairs:
        new_models = (
            []
            if photos and photos[-1] == photo
            else sorted(set(models_of.get(photo, ())) - set(models))
        )
        cost = (0 if photos and photos[-1] == photo else _cost(photo)) + sum(map(_cost, new_models))
        cost += _cost(decision) if decision else 0
        if photos and size + cost > max_bytes:
            parts.append((photos, models, decisions))
            photos, decisions, models, size = [], [], [], base
            new_models = sorted(set(models_of.get(photo, ())))
            cost = _cost(photo) + sum(map(_cost, new_models)) + (_cost(decision) if decision else 0)
        if not photos or photos[-1] != photo:
            photos.append(photo)
        models.extend(new_models)
        if decision:
            decisions.append(decision)
        size += cost
    parts.append((photos, models, decisions))
    leftover_models = sorted(set(order.model_ids) - {m for _, ms, _ in parts for m in ms})
    if leftover_models:  # models the order names without a photo here: they go in the first part
        parts[0][1].extend(leftover_models)
    return [
        replace(
            order,
            order_id=order.order_id if i == 0 else part_id(i),
            photo_ids=tuple(sorted(set(ps))),
            model_ids=tuple(sorted(set(ms))),
            decision_ids=tuple(sorted(set(ds))),
        )
        for i, (ps, ms, ds) in enumerate(parts)
    ]
