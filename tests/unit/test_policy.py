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


# ---------------------------------------------------------------- trust boundaries (hardening)

HARDENING_INVALID = [
    (
        "ML_TRAINING on another basis",
        _BASE.replace("ML_TRAINING: {basis: consent}", "ML_TRAINING: {basis: contract}  #<"),
        "purposes.ML_TRAINING.basis is 'contract'",
    ),
    (
        "ML_TRAINING on legitimate interest (block style)",
        _BASE.replace(
            "  ML_TRAINING: {basis: consent}\n",
            "  ML_TRAINING:\n    internal_only: false\n    basis: legitimate_interest  #<\n",
        ),
        "may only rest on their consent",
    ),
    (
        "sensitive category under a non-consent purpose",
        _BASE.replace(
            "{basis: contract, internal_only: true}",
            "{basis: contract, internal_only: true,\n    categories: [IMAGE, FACE_BIOMETRIC]}  #<",
        ),
        "FACE_BIOMETRIC, a sensitive category",
    ),
    (
        "operator-declared sensitive category under a non-consent purpose",
        "sensitive_categories: [FACE_BIOMETRIC, DEMOGRAPHIC]\n"
        + _BASE.replace(
            "{basis: contract, internal_only: true}",
            "{basis: contract, categories: [DEMOGRAPHIC]}  #<",
        ),
        "DEMOGRAPHIC, a sensitive category",
    ),
    (
        "merge key with anchor",
        "x-defaults: &d {basis: consent}  #<\n"
        + _BASE.replace("ML_TRAINING: {basis: consent}", "ML_TRAINING: {<<: *d}"),
        "anchor &d is not allowed",
    ),
    (
        "merge key without anchor on the same line",
        _BASE.replace("  ML_TRAINING: {basis: consent}", "  ML_TRAINING: {<<: {basis: x}}  #<"),
        "merge keys (<<) are not allowed",
    ),
    (
        "alias",
        _BASE.replace("purposes: [ML_TRAINING]", "purposes: *p  #<"),
        "alias *p is not allowed",
    ),
    (
        "python object tag",
        _BASE.replace("id: DPA-1,", "id: !!python/object/apply:os.system [echo pwned],  #<\n     "),
        "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    ("custom tag", _BASE + "    internal: !secret yes  #<\n", "YAML tag '!secret' is not allowed"),
    (
        "binary tag",
        _BASE + "    internal: !!binary aGVsbG8=  #<\n",
        "is not allowed",
    ),
    (
        "nested duplicate key",
        _BASE.replace('expires: "2027-06-30"}', 'expires: "2027-06-30", id: DPA-2}  #<'),
        "duplicate key 'recipients.acme.agreement.id'",
    ),
    (
        "duplicate top-level key",
        _BASE + "purposes: {}  #<\n",
        "duplicate key 'purposes'",
    ),
    (
        "impossible unquoted date",
        _BASE.replace('"2027-06-30"}', "2027-02-30}  #<"),
        "calendar date YYYY-MM-DD (got '2027-02-30')",
    ),
    ("skew not a number", _BASE + "time: {max_skew_s: soon}  #<\n", "time.max_skew_s must be"),
    ("negative lateness", _BASE + "time: {max_lateness_s: -5}  #<\n", "time.max_lateness_s"),
    ("boolean skew", _BASE + "time: {max_skew_s: true}  #<\n", "time.max_skew_s"),
    ("infinite lateness", _BASE + "time: {max_lateness_s: .inf}  #<\n", "time.max_lateness_s"),
    ("unknown time key", _BASE + "time: {max_skw_s: 5}  #<\n", "unknown key 'time.max_skw_s'"),
    ("time not a mapping", _BASE + "time: 60  #<\n", "time must be a mapping"),
    ("zero recall", _BASE + "recall_within_days: 0  #<\n", "recall_within_days must be a number"),
    ("text recall", _BASE + 'recall_within_days: "30"  #<\n', "recall_within_days must be"),
    (
        "recipient recall negative",
        _BASE + "    recall_within_days: -1  #<\n",
        "recipients.acme.recall_within_days must be a number above zero",
    ),
    ("two documents", _BASE + "---  #<\nfoo: 1\n", "not valid YAML"),
]


@pytest.mark.parametrize(
    ("text", "needle"),
    [(t, n) for _, t, n in HARDENING_INVALID],
    ids=[i[0] for i in HARDENING_INVALID],
)
def test_hardened_policy_errors_name_file_and_line(text: str, needle: str) -> None:
    line = next(i for i, row in enumerate(text.splitlines(), start=1) if row.endswith("#<"))
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "ops/policy.yaml")
    message = str(caught.value)
    assert message.startswith(f"ops/policy.yaml:{line}:"), message
    assert needle in message, message
    assert "Traceback" not in message


def test_anchor_is_refused_at_its_line() -> None:
    text = "defaults: &d {basis: consent}\n" + _BASE
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml")
    assert str(caught.value).startswith("p.yaml:1:")


def test_python_tag_never_executes(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = _BASE.replace("id: DPA-1", f"id: !!python/object/apply:os.system ['touch {marker}']")
    with pytest.raises(PolicyError):
        parse_policy(text)
    assert not marker.exists()


def test_oversized_policy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text(_BASE + "# " + "x" * (1024 * 1024) + "\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"more than the 1048576 bytes \(1 MiB\)") as caught:
        load_policy(path)
    assert str(caught.value).startswith(f"{path}:")
    with pytest.raises(PolicyError, match="1 MiB"):
        parse_policy(path.read_text(encoding="utf-8"), "huge.yaml")


def test_deeply_nested_yaml_is_a_policy_error() -> None:
    with pytest.raises(PolicyError, match="nested too deeply"):
        parse_policy("purposes: " + "[" * 1000 + "]" * 1000 + "\nrecipients: {}\n", "p.yaml")


def test_time_and_recall_defaults() -> None:
    policy = parse_policy(CONTRACT_POLICY)
    assert policy.time.max_skew_s == 60 and policy.time.max_lateness_s == 300
    assert policy.time.max_skew_ms == 60_000 and policy.time.max_lateness_ms == 300_000
    assert policy.default_recall_within_days == 30
    assert policy.recall_within_days("acme-vision") == 30
    assert policy.recall_within_days("not-registered") == 30
    assert policy.recall_within_ms("photo-cdn") == 30 * 86_400_000


def test_time_and_recall_are_parsed() -> None:
    text = (
        "time: {max_skew_s: 5, max_lateness_s: 86400.5}\n"
        "recall_within_days: 0.5\n"
        + _BASE
        + "    recall_within_days: 7\n"
        + "  other:\n    purposes: [ML_TRAINING]\n"
    )
    policy = parse_policy(text)
    assert policy.time.max_skew_s == 5.0 and policy.time.max_lateness_ms == 86_400_500
    assert policy.default_recall_within_days == 0.5
    acme = policy.recipient("acme")
    assert acme is not None and acme.recall_within_days == 7.0
    assert policy.recall_within_days("acme") == 7.0
    assert policy.recall_within_days(acme) == 7.0
    assert policy.recall_within_days("other") == 0.5
    assert policy.recall_within_ms("other") == 43_200_000


def test_partial_time_keeps_the_other_default() -> None:
    policy = parse_policy(_BASE + "time: {max_lateness_s: 0}\n")
    assert policy.time.max_skew_s == 60 and policy.time.max_lateness_s == 0


def test_non_consent_purposes_never_carry_sensitive_categories() -> None:
    policy = parse_policy(CONTRACT_POLICY)
    service = policy.purposes[Purpose.SERVICE_OPERATION]
    assert DataCategory.FACE_BIOMETRIC not in service.categories
    assert DataCategory.IMAGE in service.categories
    assert DataCategory.FACE_BIOMETRIC in policy.purposes[Purpose.ML_TRAINING].categories
    assert policy.categories_not_carried(
        Purpose.ANALYTICS, [DataCategory.IMAGE, DataCategory.FACE_BIOMETRIC]
    ) == {DataCategory.FACE_BIOMETRIC}
    assert not policy.categories_not_carried(Purpose.ML_TRAINING, [DataCategory.FACE_BIOMETRIC])
    assert policy.categories_not_carried(Purpose.UNKNOWN, [DataCategory.IMAGE]) == {
        DataCategory.IMAGE
    }


def test_purpose_categories_restrict_what_it_carries() -> None:
    text = _BASE.replace(
        "{basis: contract, internal_only: true}",
        "{basis: contract, internal_only: true, categories: [IMAGE]}",
    )
    rule = parse_policy(text).purposes[Purpose.SERVICE_OPERATION]
    assert rule.categories == {DataCategory.IMAGE}


def test_example_policy_in_deploy_loads_and_shows_the_new_fields() -> None:
    path = Path(__file__).resolve().parents[2] / "deploy" / "policy.example.yaml"
    text = path.read_text(encoding="utf-8")
    assert "max_skew_s" in text and "recall_within_days" in text
    policy = load_policy(path)
    assert policy.time.max_skew_s == 60 and policy.time.max_lateness_s == 300
    assert any(r.recall_within_days is not None for r in policy.recipients.values())
