"""Policy file parsing and strict validation (contract section 4)."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from streams.core.model import DataCategory, Purpose
from streams.core.policy import Basis, load_policy, parse_policy
from streams.core.times import to_millis
from streams.errors import PolicyError

CONTRACT_POLICY = """\
version: "2026-11-26.1"          # stamped on every decision (default: a hash of the file)
sensitive_categories: [FACE_BIOMETRIC]
purposes:
  SERVICE_OPERATION: {basis: contract, internal_only: true}
  ML_TRAINING:       {basis: consent}
  PARTNER_SHARING:   {basis: consent}
  RESEARCH:          {basis: consent}
  ADVERTISING:       {basis: consent}
  ANALYTICS:         {basis: legitimate_interest, internal_only: true}
recipients:
  acme-vision:                   # an outside AI vendor
    agreement: {id: DPA-2026-017, expires: "2027-06-30"}
    purposes: [ML_TRAINING]
    bulk_export: {max_photos_per_hour: 5000, auto_suspend: true}
  photo-cdn:
    internal: true
    agreement: {id: INTERNAL}
    purposes: [SERVICE_OPERATION]
"""


def ms(*args: int) -> int:
    return to_millis(datetime(*args, tzinfo=UTC))  # type: ignore[misc]


def test_contract_example_loads() -> None:
    policy = parse_policy(CONTRACT_POLICY, "policy.yaml")
    assert policy.version == "2026-11-26.1"
    assert policy.source == "policy.yaml"
    assert policy.sensitive_categories == {DataCategory.FACE_BIOMETRIC}
    assert set(policy.purposes) == set(Purpose) - {Purpose.UNKNOWN}
    assert policy.purposes[Purpose.ML_TRAINING].basis is Basis.CONSENT
    assert policy.purposes[Purpose.ML_TRAINING].consent_based
    assert policy.purposes[Purpose.ANALYTICS].basis is Basis.LEGITIMATE_INTEREST
    assert policy.purposes[Purpose.ANALYTICS].internal_only
    assert not policy.purposes[Purpose.RESEARCH].internal_only

    acme = policy.recipient("acme-vision")
    assert acme is not None and not acme.internal
    assert acme.purposes == {Purpose.ML_TRAINING}
    assert acme.agreement is not None
    assert acme.agreement.id == "DPA-2026-017"
    assert acme.agreement.expires == date(2027, 6, 30)
    assert acme.bulk_export is not None
    assert acme.bulk_export.max_photos_per_hour == 5000
    assert acme.bulk_export.auto_suspend is True

    cdn = policy.recipient("photo-cdn")
    assert cdn is not None and cdn.internal
    assert cdn.agreement is not None and cdn.agreement.expires is None
    assert cdn.bulk_export is None
    assert policy.recipient("nobody") is None


def test_agreement_valid_through_end_of_expiry_day_utc() -> None:
    acme = parse_policy(CONTRACT_POLICY).recipient("acme-vision")
    assert acme is not None and acme.agreement is not None
    assert acme.agreement.valid_at(ms(2027, 6, 30, 23, 59, 59) + 999)
    assert not acme.agreement.valid_at(ms(2027, 7, 1))
    assert acme.agreement.valid_at(ms(2020, 1, 1))


def test_unquoted_date_and_defaults() -> None:
    text = """\
purposes:
  RESEARCH: {basis: consent}
recipients:
  uni:
    agreement: {id: 42, expires: 2027-01-31}
    purposes: [RESEARCH]
"""
    policy = parse_policy(text)
    uni = policy.recipient("uni")
    assert uni is not None and uni.agreement is not None
    assert uni.agreement.id == "42"
    assert uni.agreement.expires == date(2027, 1, 31)
    assert policy.sensitive_categories == {DataCategory.FACE_BIOMETRIC}


def test_recipient_without_agreement_is_allowed_but_has_none() -> None:
    text = "purposes: {RESEARCH: {basis: consent}}\nrecipients:\n  x: {purposes: [RESEARCH]}\n"
    x = parse_policy(text).recipient("x")
    assert x is not None and x.agreement is None


def test_default_version_is_stable_short_hash() -> None:
    text = CONTRACT_POLICY.split("\n", 1)[1]  # drop the version line
    first = parse_policy(text)
    assert re.fullmatch(r"sha256:[0-9a-f]{12}", first.version)
    assert parse_policy(text).version == first.version
    assert first.fingerprint.startswith("sha256:") and len(first.fingerprint) == 7 + 64
    assert first.fingerprint.startswith(first.version)
    changed = parse_policy(text.replace("5000", "5001"))
    assert changed.version != first.version


def test_load_policy_matches_parse(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    text = CONTRACT_POLICY.split("\n", 1)[1]
    path.write_text(text, encoding="utf-8")
    loaded = load_policy(path)
    assert loaded.version == parse_policy(text).version
    assert loaded.source == str(path)


def test_load_policy_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "absent.yaml")


def test_policy_is_immutable() -> None:
    policy = parse_policy(CONTRACT_POLICY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.version = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        policy.recipients["evil"] = policy.recipients["acme-vision"]  # type: ignore[index]
    with pytest.raises(TypeError):
        policy.purposes[Purpose.ADVERTISING] = policy.purposes[Purpose.RESEARCH]  # type: ignore[index]
    acme = policy.recipient("acme-vision")
    assert acme is not None
    with pytest.raises(AttributeError):
        acme.purposes.add(Purpose.ADVERTISING)  # type: ignore[attr-defined]


# Each invalid document marks the offending line with "#<" (or names it explicitly).
_BASE = """\
purposes:
  ML_TRAINING: {basis: consent}
  SERVICE_OPERATION: {basis: contract, internal_only: true}
recipients:
  acme:
    agreement: {id: DPA-1, expires: "2027-06-30"}
    purposes: [ML_TRAINING]
"""

INVALID = [
    ("unknown top-level key", _BASE + "recipents: {}  #<\n", "unknown top-level key 'recipents'"),
    (
        "unknown purpose",
        _BASE.replace("  ML_TRAINING: {basis: consent}", "  ML_TRAINNG: {basis: consent}  #<"),
        "unknown purpose 'ML_TRAINNG'",
    ),
    (
        "UNKNOWN is not a purpose",
        _BASE.replace("  ML_TRAINING: {basis: consent}", "  UNKNOWN: {basis: consent}  #<"),
        "unknown purpose",
    ),
    (
        "unknown purpose in recipient",
        _BASE.replace("purposes: [ML_TRAINING]", "purposes: [ML_TRAINING, SPYING]  #<"),
        "'SPYING'",
    ),
    (
        "unknown category",
        "sensitive_categories: [FACE_BIOMETRIC, DNA]  #<\n" + _BASE,
        "'DNA'",
    ),
    (
        "unknown recipient key",
        _BASE + "    bulk_exports: {max_photos_per_hour: 5}  #<\n",
        "unknown key 'recipients.acme.bulk_exports'",
    ),
    (
        "unknown agreement key",
        _BASE.replace('expires: "2027-06-30"}', 'expires: "2027-06-30", until: x}  #<'),
        "recipients.acme.agreement.until",
    ),
    (
        "unknown purpose key",
        _BASE.replace("{basis: consent}", "{basis: consent, sensitive: true}  #<"),
        "purposes.ML_TRAINING.sensitive",
    ),
    (
        "bad basis",
        _BASE.replace("{basis: consent}", "{basis: consnt}  #<"),
        "unknown legal basis 'consnt'",
    ),
    (
        "missing basis",
        _BASE.replace("{basis: consent}", "{internal_only: false}  #<"),
        "missing required key 'basis'",
    ),
    (
        "impossible date",
        _BASE.replace('"2027-06-30"}', '"2027-02-30"}  #<'),
        "calendar date",
    ),
    (
        "free-text date",
        _BASE.replace('"2027-06-30"}', '"June 2027"}  #<'),
        "calendar date",
    ),
    (
        "datetime instead of date",
        _BASE.replace('"2027-06-30"}', "2027-06-30T00:00:00Z}  #<"),
        "calendar date",
    ),
    (
        "duplicate key",
        _BASE.replace(
            "  ML_TRAINING: {basis: consent}\n",
            "  ML_TRAINING: {basis: consent}\n  ML_TRAINING: {basis: contract}  #<\n",
        ),
        "duplicate key 'purposes.ML_TRAINING'",
    ),
    (
        "non-boolean flag",
        _BASE + "    internal: maybe  #<\n",
        "recipients.acme.internal must be true or false",
    ),
    (
        "non-positive bulk limit",
        _BASE + "    bulk_export: {max_photos_per_hour: 0}  #<\n",
        "max_photos_per_hour must be a positive integer",
    ),
    (
        "purpose not configured",
        _BASE.replace("purposes: [ML_TRAINING]", "purposes: [ML_TRAINING, RESEARCH]  #<"),
        "not configured",
    ),
    (
        "internal_only purpose to outside recipient",
        _BASE.replace("purposes: [ML_TRAINING]", "purposes: [SERVICE_OPERATION]  #<"),
        "internal_only",
    ),
    (
        "agreement without id",
        _BASE.replace('{id: DPA-1, expires: "2027-06-30"}', '{expires: "2027-06-30"}  #<'),
        "missing required key 'id'",
    ),
    ("recipient not a mapping", _BASE + "  other: [ML_TRAINING]  #<\n", "must be a mapping"),
    ("broken YAML", _BASE + "  other: {purposes: [ML_TRAINING}  #<\n", "not valid YAML"),
]


@pytest.mark.parametrize(
    ("text", "needle"), [(t, n) for _, t, n in INVALID], ids=[i[0] for i in INVALID]
)
def test_invalid_policy_names_file_and_line(text: str, needle: str) -> None:
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if row.endswith("#<"))
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "ops/policy.yaml")
    message = str(caught.value)
    assert message.startswith(f"ops/policy.yaml:{line}:"), message
    assert needle in message


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "empty"),
        ("- a\n- b\n", "must be a mapping"),
        ("purposes: {}\n", "missing required key 'recipients'"),
        ("recipients: {}\n", "missing required key 'purposes'"),
    ],
)
def test_invalid_documents_point_at_line_one(text: str, needle: str) -> None:
    with pytest.raises(PolicyError, match=needle) as caught:
        parse_policy(text, "p.yaml")
    assert str(caught.value).startswith("p.yaml:1:")


def test_typo_gets_a_suggestion() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("purposes: {}\nrecipients: {}\nsensitive_categorys: []\n", "p.yaml")
    assert "sensitive_categories" in str(caught.value)
    assert caught.value.error_kind == "POLICY"
