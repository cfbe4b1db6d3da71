"""A realistic dating-app workload, generated purely and deterministically in event time.

What the background looks like (all rates follow :func:`rhythm`, the app's daily cycle: quiet
at night, a lunch bump, a peak around 21:00 UTC; ``rate`` is the daily mean in events/second):

- **bootstrap**: ``users`` existing users upload 1-6 photos and state their consents during the
  hour before the start (so the gate knows them before any request);
- **uploads** (14%), a tenth of them by new sign-ups, who state their consents;
- **consent changes** (4%): grants, withdrawals, re-grants; some grants expire (promotions);
- **shares to the CDN** (the internal ``SERVICE_OPERATION`` recipient, ~62%), by ``match-feed``;
- **analytics** (8%) to the internal ``ANALYTICS`` recipient, by ``insights-etl``;
- **partner shares** (``PARTNER_SHARING``/``ADVERTISING`` to the external partners) by
  ``partner-sync`` and ``ads-sync``, which mostly ask for users who opted in (93%) and sometimes
  from a stale list; their rate is capped so the evening peak stays at 35% of the partner's limit;
- a trickle of ``RESEARCH`` exports to recipients allowed ``RESEARCH`` (a few a day);
- **training jobs**: every night at 02:00 (+-15 min) the ML vendor's loader reads up to
  ``nightly_reads`` photos of users whose consent allows it, and at 04:00 a smaller face-model
  job reads photos of users who consented to ``FACE_BIOMETRIC`` explicitly.

Consent mix at sign-up: ``PARTNER_SHARING`` 40%, ``ADVERTISING`` 25% (30% of them promotional,
expiring within 1 hour to 3 days), ``ML_TRAINING`` 35% (a quarter including ``FACE_BIOMETRIC``),
``RESEARCH`` 15%; about half of the grants name a recipient, the rest any recipient.

:class:`Workload` adds the scenarios of :mod:`streams.simulate.scenarios` and yields
:class:`~streams.simulate.engine.SimEvent` objects in ``emit_at`` order.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from streams.core.model import Purpose
from streams.core.policy import Policy
from streams.errors import ConfigError
from streams.simulate.engine import Crossing, Engine, GroundTruth, Process, SimEvent
from streams.simulate.population import User
from streams.simulate.scenarios import SCENARIOS, ScenarioSpec

MINUTE = 60_000
HOUR = 3_600_000
DAY = 86_400_000
CONSENT_PURPOSES = ("PARTNER_SHARING", "ADVERTISING", "ML_TRAINING", "RESEARCH")
_SIGNUP_GRANT = {
    "PARTNER_SHARING": 0.40,
    "ADVERTISING": 0.25,
    "ML_TRAINING": 0.35,
    "RESEARCH": 0.15,
}


def _bump(hour: float, centre: float, width: float) -> float:
    distance = min(abs(hour - centre), 24 - abs(hour - centre))
    return math.exp(-(distance**2) / (2 * width**2))


def _raw_rhythm(hour: float) -> float:
    return (
        0.2 + 0.3 * _bump(hour, 8, 1.5) + 0.5 * _bump(hour, 12.5, 2.5) + 1.6 * _bump(hour, 21, 2.2)
    )


_RAW = [_raw_rhythm(minute / 60) for minute in range(24 * 60)]
_RHYTHM = [value * len(_RAW) / sum(_RAW) for value in _RAW]


def rhythm(hour_of_day: float) -> float:
    """Return the app's activity at ``hour_of_day`` (UTC, 0-24) relative to the daily mean (1).

    Constant within each minute of the day.
    """
    return _RHYTHM[int(hour_of_day * 60 + 1e-9) % len(_RHYTHM)]


RHYTHM_PEAK = max(_RHYTHM)
"""The highest value of :func:`rhythm` (about 2.2, around 21:00)."""


@dataclass(frozen=True, slots=True)
class WorkloadConfig:
    """What to simulate; see the module docstring for the meaning of each part."""

    rate: float = 10.0
    duration_s: float = 3600.0
    start_ms: int = 1_795_000_000_000 // DAY * DAY
    seed: int = 0
    users: int = 5000
    nightly_reads: int = 1200
    face_reads: int = 300
    partner_share: float = 0.06
    partner_peak_fraction: float = 0.35
    research_per_day: float = 4.0

    def __post_init__(self) -> None:
        if self.rate <= 0 or self.duration_s <= 0 or self.users < 1:
            raise ConfigError("simulate: rate, duration and users must be positive")

    @property
    def end_ms(self) -> int:
        """The end of the simulated span (exclusive)."""
        return self.start_ms + int(self.duration_s * 1000)


class Workload:
    """A simulation run: background traffic plus scenarios, as an iterator of events."""

    def __init__(
        self, policy: Policy, config: WorkloadConfig, scenarios: Sequence[ScenarioSpec] = ()
    ) -> None:
        self.policy = policy
        self.config = config
        self.engine = Engine(
            policy, seed=config.seed, start_ms=config.start_ms, end_ms=config.end_ms
        )
        self.scenarios = list(scenarios)
        self._routes = _Routes.of(policy)
        self._weights = self._mix()

    @property
    def ground_truth(self) -> list[GroundTruth]:
        """The scenarios' ground truth recorded so far (complete once :meth:`events` is done)."""
        return self.engine.ground_truth

    def unclaimed_crossings(self) -> list[Crossing]:
        """Threshold crossings of the background alone (should be none at normal volume)."""
        return self.engine.unclaimed_crossings()

    def events(self) -> Iterator[SimEvent]:
        """Yield every event of the run in ``emit_at`` order (bootstrap events first)."""
        cfg, engine = self.config, self.engine
        engine.spawn(self._bootstrap(), cfg.start_ms - HOUR)
        engine.spawn(self._arrivals(), cfg.start_ms)
        if self._routes.research:
            engine.spawn(self._research(), cfg.start_ms)
        if self._routes.vendor:
            engine.spawn(self._nightly(2, cfg.nightly_reads, ("IMAGE",), "scene-v3"), cfg.start_ms)
            engine.spawn(
                self._nightly(4, cfg.face_reads, ("IMAGE", "FACE_BIOMETRIC"), "face-embed-v1"),
                cfg.start_ms,
            )
        for index, spec in enumerate(self.scenarios):
            rng = random.Random(f"{cfg.seed}/{spec.name}/{index}")
            start = cfg.start_ms + (spec.offset_ms or 0)
            engine.spawn(SCENARIOS[spec.name](engine, spec, start, rng), start)
        return engine.run()

    # ------------------------------------------------------------------ the mix

    def _mix(self) -> dict[str, float]:
        """Event-type weights, the partner share capped by the partners' limits."""
        cfg, routes = self.config, self._routes
        partner = cfg.partner_share if routes.partners else 0.0
        if routes.partner_limit:
            cap = cfg.partner_peak_fraction * routes.partner_limit / (cfg.rate * 3600 * RHYTHM_PEAK)
            partner = min(partner, cap)
        weights = {
            "upload": 0.14,
            "consent": 0.04,
            "analytics": 0.08 if routes.analytics else 0.0,
            "partner": partner,
        }
        weights["cdn"] = max(0.0, 1.0 - sum(weights.values())) if routes.cdn else 0.0
        return weights

    # ------------------------------------------------------------------ processes

    def _bootstrap(self) -> Process:
        """Emit the existing users' photos and consents during the hour before the start."""
        engine, rng = self.engine, self.engine.rng
        n = self.config.users
        for i in range(n):
            yield self.config.start_ms - HOUR + i * HOUR // n
            user = engine.new_user()
            for _ in range(rng.randint(1, 6)):
                yield engine.upload(user, rng)
            yield from self._signup_consents(user)

    def _signup_consents(self, user: User) -> Iterator[SimEvent]:
        rng = self.engine.rng
        for purpose, p in _SIGNUP_GRANT.items():
            if rng.random() < p:
                yield self._grant(user, purpose)

    def _grant(self, user: User, purpose: str) -> SimEvent:
        """Return a grant in the realistic mix (recipient, categories, expiry)."""
        engine, rng, routes = self.engine, self.engine.rng, self._routes
        targets = routes.targets(purpose)
        recipient = rng.choice(targets) if targets and rng.random() < 0.5 else None
        categories: tuple[str, ...] = ()
        if purpose == "ML_TRAINING" and rng.random() < 0.25:
            categories = ("IMAGE", "FACE_BIOMETRIC")
        expires = None
        if purpose == "ADVERTISING" and rng.random() < 0.3:
            expires = engine.now + rng.randint(HOUR, 3 * DAY)
        elif rng.random() < 0.05:
            expires = engine.now + rng.randint(30 * DAY, 365 * DAY)
        return engine.consent(
            user,
            rng,
            purpose=purpose,
            granted=True,
            recipient=recipient,
            categories=categories,
            expires_at=expires,
        )

    def _arrivals(self) -> Process:
        """Emit the Poisson background, thinned to follow the daily rhythm."""
        rng, cfg = self.engine.rng, self.config
        peak = cfg.rate * RHYTHM_PEAK / 1000  # events per ms at the peak
        kinds = [k for k, w in self._weights.items() if w > 0]
        weights = [self._weights[k] for k in kinds]
        t = float(cfg.start_ms)
        while True:
            t += rng.expovariate(peak)
            if rng.random() * RHYTHM_PEAK > rhythm((t % DAY) / HOUR):
                continue
            yield int(t)
            yield from self._background(rng.choices(kinds, weights)[0])

    def _background(self, kind: str) -> list[SimEvent]:
        """Return the events of one background arrival of ``kind``."""
        engine, rng, routes = self.engine, self.engine.rng, self._routes
        if kind == "upload":
            known = engine.by_id.get(engine.with_photos.choice(rng) or "")
            if known is not None and rng.random() >= 0.1:
                return [engine.upload(known, rng)]
            user = engine.new_user()  # a sign-up: first photo, then consents
            return [engine.upload(user, rng), *self._signup_consents(user)]
        if kind == "consent":
            return self._consent_change()
        chosen = engine.by_id.get(engine.with_photos.choice(rng) or "")
        if chosen is None:
            return []
        user = chosen
        if kind == "cdn":
            requester, org, purpose = "match-feed", rng.choice(routes.cdn), "SERVICE_OPERATION"
            categories: tuple[str, ...] = ("IMAGE",)
        elif kind == "analytics":
            requester, org, purpose = "insights-etl", rng.choice(routes.analytics), "ANALYTICS"
            categories = ("IMAGE", "DEMOGRAPHIC")
        else:
            purpose, org = rng.choice(routes.partners)
            if rng.random() < 0.93:  # the sync mostly asks for users who opted in
                picked = engine.by_id.get(engine.pool(purpose).choice(rng) or "")
                if picked is not None and picked.photos:
                    user = picked
            partner = purpose == "PARTNER_SHARING"
            requester = "partner-sync" if partner else "ads-sync"
            categories = ("IMAGE", "PROFILE_TEXT") if partner else ("IMAGE",)
        event = engine.share(
            user,
            rng.choice(user.photos),
            rng,
            requester=requester,
            recipient=org,
            purpose=purpose,
            categories=categories,
        )
        return [event]

    def _consent_change(self) -> list[SimEvent]:
        """Let a user change their mind: withdraw a grant (60%), or grant anew."""
        engine, rng = self.engine, self.engine.rng
        if not engine.users:
            return []
        user = rng.choice(engine.users)
        purpose = rng.choice(CONSENT_PURPOSES)
        held = [key for key, g in user.consents.items() if key[0] == purpose and g.granted]
        if held and rng.random() < 0.6:
            _, recipient = rng.choice(held)
            return [engine.consent(user, rng, purpose=purpose, granted=False, recipient=recipient)]
        return [self._grant(user, purpose)]

    def _research(self) -> Process:
        """Emit a few RESEARCH exports a day (to recipients whose agreement may have lapsed)."""
        engine, rng, cfg = self.engine, self.engine.rng, self.config
        t = float(cfg.start_ms)
        while True:
            t += rng.expovariate(cfg.research_per_day / DAY)
            yield int(t)
            user = engine.by_id.get(engine.with_photos.choice(rng) or "")
            if user is not None:
                yield engine.share(
                    user,
                    rng.choice(user.photos),
                    rng,
                    requester="research-export",
                    recipient=rng.choice(self._routes.research),
                    purpose="RESEARCH",
                    categories=("IMAGE",),
                )

    def _nightly(self, hour: int, reads: int, categories: tuple[str, ...], model: str) -> Process:
        """Every night at ``hour``:00 (+-15 min), a job reads consenting users' photos."""
        engine, cfg = self.engine, self.config
        vendor = self._routes.vendor
        assert vendor is not None
        rng = random.Random(f"{cfg.seed}/nightly/{model}")
        day = cfg.start_ms // DAY * DAY
        while day < cfg.end_ms:
            begin = day + hour * HOUR + rng.randint(-15, 15) * MINUTE
            day += DAY
            if begin < cfg.start_ms:
                continue
            yield begin
            job = f"{vendor}-{model}-{(begin // DAY) % 100_000:05d}"
            pace = rng.uniform(1.6, 2.0) * 1000  # ms between reads
            for i in range(reads):
                picked = engine.consented_photo(rng, "ML_TRAINING", vendor, categories)
                if picked is not None:
                    user, photo = picked
                    yield engine.training_read(
                        user,
                        photo,
                        rng,
                        job_id=job,
                        model_id=model,
                        org=vendor,
                        categories=categories,
                    )
                yield begin + int((i + 1) * pace)


@dataclass(frozen=True, slots=True)
class _Routes:
    """Which recipients of the policy receive which background traffic."""

    cdn: list[str]
    analytics: list[str]
    partners: list[tuple[str, str]]
    partner_limit: int | None
    research: list[str]
    vendor: str | None
    by_purpose: dict[str, list[str]]

    def targets(self, purpose: str) -> list[str]:
        """Recipients a consent for ``purpose`` may name."""
        return self.by_purpose.get(purpose, [])

    @classmethod
    def of(cls, policy: Policy) -> _Routes:
        """Derive the routes from the recipients and purposes the policy configures."""
        recipients = sorted(policy.recipients.values(), key=lambda r: r.org)

        def allowed(purpose: str, *, internal: bool | None = None) -> list[str]:
            return [
                r.org
                for r in recipients
                if Purpose(purpose) in r.purposes and (internal is None or r.internal == internal)
            ]

        partners = [(p, org) for p in ("PARTNER_SHARING", "ADVERTISING") for org in allowed(p)]
        limits = [
            r.bulk_export.max_photos_per_hour
            for r in recipients
            if r.bulk_export and any(org == r.org for _, org in partners)
        ]
        vendors = sorted(
            (r for r in recipients if Purpose.ML_TRAINING in r.purposes),
            key=lambda r: (r.bulk_export is None, r.internal, r.org),
        )
        return cls(
            cdn=allowed("SERVICE_OPERATION", internal=True),
            analytics=allowed("ANALYTICS", internal=True),
            partners=partners,
            partner_limit=min(limits) if limits else None,
            research=allowed("RESEARCH"),
            vendor=vendors[0].org if vendors else None,
            by_purpose={p: allowed(p, internal=False) for p in CONSENT_PURPOSES},
        )
