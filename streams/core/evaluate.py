"""The decision rules of contract section 3, as one pure function.

:func:`evaluate` applies the rules in the contract's order and returns the first failure:

1. ``UNKNOWN_PHOTO`` (no upload known), ``OWNER_MISMATCH``;
2. ``RECIPIENT_UNKNOWN``, ``NO_AGREEMENT`` (none, or expired at the request's ``occurred_at``),
   ``PURPOSE_NOT_PERMITTED`` (purpose not configured, not in the recipient's list, or
   ``internal_only`` for an outside recipient), ``RECIPIENT_SUSPENDED`` (verdict ``HOLD``);
3. for a purpose whose basis is ``consent``: ``NO_CONSENT``, ``CONSENT_REVOKED``,
   ``CONSENT_EXPIRED`` (``expires_at <= occurred_at``), ``CATEGORY_NOT_CONSENTED``;
   a request names a photo, so the categories judged are the listed ones plus ``IMAGE``
   (also for a purpose on another basis: ``IMAGE`` must be among those it may carry);
4. otherwise ``ALLOW`` with ``CONSENTED`` or ``NOT_CONSENT_BASED``.

Guarantees: the result depends only on the arguments (not on the clock or on the order in which
consent records were added); ``ALLOW`` is returned only by step 4; an unknown purpose or category
symbol is never covered. :func:`decide_safely` additionally turns any unexpected exception into
``DENY``/``UNKNOWN``, so an error inside the gate cannot let a photo out.
"""

from __future__ import annotations

from streams.core.consent import ConsentHistory
from streams.core.model import AccessRequest, DataCategory, Decision, Reason, SubjectKind, Verdict
from streams.core.policy import Policy
from streams.core.times import iso_day

_UNKNOWN_ONLY = frozenset({DataCategory.UNKNOWN})
_IMAGE_ONLY = frozenset({DataCategory.IMAGE})


def evaluate(
    request: AccessRequest,
    *,
    photo_owner: str | None,
    consents: ConsentHistory | None,
    suspended: bool,
    policy: Policy,
    at_ms: int | None = None,
) -> Decision:
    """Decide ``request`` under ``policy``, judging consent and agreements at ``at_ms``.

    ``at_ms`` is the request's effective time (CONTRACT §3: the later of its ``occurred_at`` and
    its partition's stream time); by default its ``occurred_at``.

    ``photo_owner`` is the owner recorded by ``photo.uploads`` for ``request.photo_id`` (``None``
    if the photo is unknown); ``consents`` is the owner's consent history (``None`` if the gate has
    none, which counts as no consent); ``suspended`` says whether a ``Control`` suspends the
    recipient. Raises ``ValueError`` if ``consents`` belongs to another user.
    """
    version = policy.version
    at = request.occurred_at_ms if at_ms is None else at_ms
    requested = request.categories | _IMAGE_ONLY  # a photo is always IMAGE (CONTRACT §3)
    if photo_owner is None:
        return _no(
            request,
            Reason.UNKNOWN_PHOTO,
            version,
            None,
            f"no upload of photo {request.photo_id} is known, so its owner cannot be checked"
            " (retry once the upload has been processed)",
        )
    if photo_owner != request.owner_id:
        return _no(
            request,
            Reason.OWNER_MISMATCH,
            version,
            None,
            f"photo {request.photo_id} does not belong to user {request.owner_id} named in the"
            " request",
        )

    org = request.recipient_org
    recipient = policy.recipients.get(org)
    if recipient is None:
        return _no(
            request,
            Reason.RECIPIENT_UNKNOWN,
            version,
            None,
            f"{org} is not a registered recipient in policy {version}",
        )
    agreement = recipient.agreement
    if agreement is None:
        return _no(
            request,
            Reason.NO_AGREEMENT,
            version,
            None,
            f"{org} has no data agreement in policy {version}",
        )
    if not agreement.valid_at(at):
        return _no(
            request,
            Reason.NO_AGREEMENT,
            version,
            None,
            f"{org}'s agreement {agreement.id} expired at the end of {agreement.expires}",
        )

    purpose = request.purpose
    rule = policy.purposes.get(purpose)
    if rule is None:
        return _no(
            request,
            Reason.PURPOSE_NOT_PERMITTED,
            version,
            None,
            f"purpose {purpose} is not configured in policy {version}",
        )
    if purpose not in recipient.purposes:
        return _no(
            request,
            Reason.PURPOSE_NOT_PERMITTED,
            version,
            None,
            f"{org}'s agreement {agreement.id} does not permit {purpose}",
        )
    if rule.internal_only and not recipient.internal:
        return _no(
            request,
            Reason.PURPOSE_NOT_PERMITTED,
            version,
            None,
            f"{purpose} data may only go to internal recipients and {org} is not internal",
        )
    if suspended:
        return Decision(
            Verdict.HOLD,
            Reason.RECIPIENT_SUSPENDED,
            f"{_subject(request, allowed=False)} for {purpose} yet: {org} is suspended by a"
            " governance control, so the request is held until an operator resumes the recipient.",
            None,
            version,
            request,
        )

    if not rule.consent_based:
        refused = policy.categories_not_carried(purpose, requested)
        if refused:
            return _no(
                request,
                Reason.CATEGORY_NOT_CONSENTED,
                version,
                None,
                f"{purpose} rests on {rule.basis.value.replace('_', ' ')}, which may not carry"
                f" {', '.join(sorted(c.value for c in refused))}",
            )
        return Decision(
            Verdict.ALLOW,
            Reason.NOT_CONSENT_BASED,
            f"{_subject(request, allowed=True)} for {purpose}: the purpose rests on"
            f" {rule.basis.value.replace('_', ' ')}, not consent, under agreement {agreement.id}.",
            None,
            version,
            request,
        )

    owner = request.owner_id
    if consents is not None and consents.user_id != owner:
        raise ValueError(f"consent history of {consents.user_id!r} given for owner {owner!r}")
    record = consents.latest_matching(purpose, org, at) if consents is not None else None
    if record is None:
        return _no(
            request,
            Reason.NO_CONSENT,
            version,
            None,
            f"user {owner} has not consented to {purpose} for {org}",
        )
    if not record.granted:
        return _no(
            request,
            Reason.CONSENT_REVOKED,
            version,
            record.event_id,
            f"user {owner} withdrew consent on {iso_day(record.occurred_at_ms)}"
            f" (consent {record.event_id})",
        )
    if record.expires_at_ms is not None and record.expires_at_ms <= at:
        return _no(
            request,
            Reason.CONSENT_EXPIRED,
            version,
            record.event_id,
            f"user {owner}'s consent expired on {iso_day(record.expires_at_ms)}"
            f" (consent {record.event_id})",
        )

    sensitive = policy.sensitive_categories
    # A grant listing categories covers exactly those; an empty list covers the non-sensitive.
    missing = requested - record.categories if record.categories else requested & sensitive
    if DataCategory.UNKNOWN in requested:
        missing = missing | _UNKNOWN_ONLY
    if missing:
        names = ", ".join(sorted(missing))
        note = (
            " (sensitive categories must be consented to explicitly)"
            if not missing.isdisjoint(sensitive)
            else ""
        )
        return _no(
            request,
            Reason.CATEGORY_NOT_CONSENTED,
            version,
            record.event_id,
            f"user {owner}'s consent {record.event_id} does not cover {names}{note}",
        )

    return Decision(
        Verdict.ALLOW,
        Reason.CONSENTED,
        f"{_subject(request, allowed=True)} for {purpose}: user {owner} consented on"
        f" {iso_day(record.occurred_at_ms)} (consent {record.event_id}).",
        record.event_id,
        version,
        request,
    )


def decide_safely(
    request: AccessRequest,
    *,
    photo_owner: str | None,
    consents: ConsentHistory | None,
    suspended: bool,
    policy: Policy,
    at_ms: int | None = None,
) -> Decision:
    """Like :func:`evaluate`, but any exception yields ``DENY`` with reason ``UNKNOWN``.

    The explanation names the exception type (not its message, which could carry data). Never
    raises for an ``AccessRequest`` and ``Policy`` built by this package.
    """
    try:
        return evaluate(
            request,
            photo_owner=photo_owner,
            consents=consents,
            suspended=suspended,
            policy=policy,
            at_ms=at_ms,
        )
    except Exception as exc:  # fail closed: whatever went wrong, the photo stays
        try:
            subject = f"{_subject(request, allowed=False)} for {request.purpose}"
        except Exception:
            subject = "The request may not proceed"
        version = getattr(policy, "version", None)
        return Decision(
            Verdict.DENY,
            Reason.UNKNOWN,
            f"{subject}: the gate could not evaluate it ({type(exc).__name__}), so it is denied"
            " until the gate's operators fix the error.",
            None,
            version if isinstance(version, str) else "unknown",
            request,
        )


def _subject(request: AccessRequest, *, allowed: bool) -> str:
    """Return who may (not) get which photo, e.g. ``acme-vision may not receive photo p1``."""
    if request.kind is SubjectKind.TRAINING_READ:
        verb = "may read" if allowed else "may not read"
        org = request.recipient_org
        return f"training job {request.actor} of {org} {verb} photo {request.photo_id}"
    verb = "may receive" if allowed else "may not receive"
    return f"{request.recipient_org} {verb} photo {request.photo_id}"


def _no(
    request: AccessRequest, reason: Reason, version: str, consent_event_id: str | None, why: str
) -> Decision:
    """Return a ``DENY`` whose explanation is the refusal, then ``why``, as one sentence."""
    return Decision(
        Verdict.DENY,
        reason,
        f"{_subject(request, allowed=False)} for {request.purpose}: {why}.",
        consent_event_id,
        version,
        request,
    )
