from prometheus_client import REGISTRY

from streams.gate import metrics


def sample(name: str, **labels: str) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_initialise_creates_only_possible_series_at_zero() -> None:
    metrics.initialise(["acme-vision"])
    assert (
        sample(
            "consentinel_gate_decisions_total",
            verdict="ALLOW",
            reason="CONSENTED",
            subject_kind="TRAINING_READ",
        )
        is not None
    )
    assert (
        sample(
            "consentinel_gate_decisions_total",
            verdict="HOLD",
            reason="RECIPIENT_SUSPENDED",
            subject_kind="SHARE",
        )
        is not None
    )
    assert (
        sample(
            "consentinel_gate_decisions_total",
            verdict="DENY",
            reason="NO_CONSENT",
            subject_kind="SHARE",
        )
        is not None
    )
    # combinations the rules cannot produce stay absent
    assert (
        sample(
            "consentinel_gate_decisions_total",
            verdict="ALLOW",
            reason="NO_CONSENT",
            subject_kind="SHARE",
        )
        is None
    )
    assert (
        sample(
            "consentinel_gate_decisions_total",
            verdict="DENY",
            reason="CONSENTED",
            subject_kind="SHARE",
        )
        is None
    )
    assert (
        sample(
            "consentinel_gate_dead_letters_total", kind="UNKNOWN_SCHEMA_ID", topic="consent.changes"
        )
        is not None
    )
    assert (
        sample("consentinel_gate_photos_out_total", recipient="acme-vision", subject_kind="SHARE")
        is not None
    )
