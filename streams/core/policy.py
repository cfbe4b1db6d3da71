"""The operator's policy file (contract section 4), parsed strictly into a :class:`Policy`.

Every mistake an operator can make in the file -- an unknown key, purpose, category or legal
basis, a malformed date, a wrong type, a duplicate key, a recipient listing a purpose the policy
does not configure or an ``internal_only`` purpose for an outside recipient -- raises
:class:`~streams.errors.PolicyError` whose message starts with ``<file>:<line>:<column>:`` pointing
at the offending key or value, then names the key path and what is expected. A policy that loads is
therefore internally consistent. The YAML itself must be plain data (no anchors, aliases, merge keys
or tags, at most 1 MiB): see :mod:`streams.core.policy_yaml`.

**Consent-only data.** The file states a legal basis per *purpose*; a data category gets a basis
through the purposes that may carry it. The loader refuses (at the line that says so):

- ``ML_TRAINING`` with a ``basis`` other than ``consent``;
- a purpose whose basis is not ``consent`` that lists a sensitive category
  (``sensitive_categories``, ``FACE_BIOMETRIC`` by default) under its optional ``categories`` key;
- a ``sensitive_categories`` list without ``FACE_BIOMETRIC``.

**Recipient ids** are compared after NFKC normalization, case folding and trimming (contract
section 3); a recipient key not already in that form, or using characters outside
``[a-z0-9._-]``, is refused, naming the id and why (see
:func:`streams.core.model.recipient_id_problem`).

A purpose's ``categories`` are the data categories it may carry. Left out, a consent-based purpose
may carry every category (consent records then decide which), and a purpose with another basis only
the non-sensitive ones. So no policy that loads lets a sensitive category or a training read rest
on anything but the owner's consent; :meth:`Policy.categories_not_carried` tells the gate which
requested categories a purpose may not carry.

**Time and recall.** ``time: {max_skew_s, max_lateness_s}`` (defaults 60 and 300 seconds; zero or
more) bounds how far producers' clocks are trusted (contract section 3), see :class:`TimeBounds`.
``recall_within_days`` (default 30; a positive number, fractions allowed) is the deadline of a
``RecallOrder``; a recipient may set its own, see :meth:`Policy.recall_within_days`.

``version`` is stamped on every decision; when the file does not set it, it defaults to
``"sha256:"`` plus the first 12 hex digits of the SHA-256 of the file's text, so an unchanged file
always yields the same version. :attr:`Policy.fingerprint` is the full hash of that text.
"""

from __future__ import annotations

import difflib
import hashlib
import math
import os
import re
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from streams.core.ack_signing import parse_ack_key
from streams.core.model import DataCategory, Purpose, canonical_recipient, recipient_id_problem
from streams.core.policy_model import (
    DEFAULT_RECALL_WITHIN_DAYS,
    DEFAULT_SENSITIVE,
    Agreement,
    Basis,
    BulkExportLimit,
    Policy,
    PurposeRule,
    Recipient,
    TimeBounds,
)
from streams.core.policy_yaml import MAX_POLICY_BYTES, check_size, compose_plain, scalar_value
from streams.errors import PolicyError

__all__ = [
    "DEFAULT_RECALL_WITHIN_DAYS",
    "DEFAULT_SENSITIVE",
    "Agreement",
    "Basis",
    "BulkExportLimit",
    "Policy",
    "PurposeRule",
    "Recipient",
    "TimeBounds",
    "load_policy",
    "parse_policy",
]


_TOP_KEYS = (
    "version",
    "sensitive_categories",
    "time",
    "recall_within_days",
    "purposes",
    "recipients",
)
_PURPOSE_KEYS = ("basis", "internal_only", "categories")
_RECIPIENT_KEYS = (
    "internal",
    "agreement",
    "purposes",
    "bulk_export",
    "recall_within_days",
    "ack_keys",
)
_TIME_KEYS = ("max_skew_s", "max_lateness_s")
_AGREEMENT_KEYS = ("id", "expires")
_BULK_KEYS = ("max_photos_per_hour", "auto_suspend")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_KNOWN_PURPOSES = [p.value for p in Purpose if p is not Purpose.UNKNOWN]
_KNOWN_CATEGORIES = [c.value for c in DataCategory if c is not DataCategory.UNKNOWN]


def load_policy(path: str | os.PathLike[str]) -> Policy:
    """Read and validate the policy file at ``path``; raise ``PolicyError`` if unusable.

    A file larger than :data:`~streams.core.policy_yaml.MAX_POLICY_BYTES` (1 MiB) is refused
    before it is read in full.
    """
    source = os.fspath(path)
    try:
        with Path(source).open("rb") as handle:
            raw = handle.read(MAX_POLICY_BYTES + 1)
            size = os.fstat(handle.fileno()).st_size
    except OSError as exc:
        raise PolicyError(
            f"{source}: cannot read the policy file: {exc.strerror or exc}",
            hint="check CONSENTINEL_POLICY / --policy",
        ) from exc
    check_size(source, max(size, len(raw)))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"{source}: the policy file is not UTF-8 text: {exc}") from exc
    return parse_policy(text, source)


def parse_policy(text: str, source_name: str = "<policy>") -> Policy:
    """Parse and validate policy YAML ``text``; ``source_name`` names it in error messages."""
    return _Parser(source_name).policy(text)


class _Parser:
    """Walks the YAML node tree (which keeps line numbers) and builds the policy."""

    def __init__(self, source: str) -> None:
        self.source = source

    # ------------------------------------------------------------------ errors and primitives

    def fail(self, node: yaml.Node | None, message: str, hint: str | None = None) -> PolicyError:
        """Return a ``PolicyError`` located at ``node`` (line 1 when there is none)."""
        if node is None:
            return PolicyError(f"{self.source}:1:1: {message}", hint=hint)
        mark = node.start_mark
        return PolicyError(f"{self.source}:{mark.line + 1}:{mark.column + 1}: {message}", hint=hint)

    def value(self, node: yaml.Node, path: str = "value") -> Any:
        """Return the Python value of a scalar node, as YAML's safe loader would type it.

        ``None`` for a non-scalar; a located ``PolicyError`` naming ``path`` when YAML cannot build
        the value (an impossible date, say).
        """
        return scalar_value(node, self.source, path)

    def number(self, node: yaml.Node, path: str, *, positive: bool) -> float:
        """Return a finite number (integer or decimal), above zero if ``positive``, else >= 0."""
        value = self.value(node, path)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok and math.isfinite(value) and (value > 0 if positive else value >= 0):
            return float(value)
        bound = "a number above zero" if positive else "a number, zero or more"
        raise self.fail(node, f"{path} must be {bound} (got {getattr(node, 'value', None)!r})")

    def mapping(
        self, node: yaml.Node, path: str, allowed: Iterable[str]
    ) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Return ``{key: (key_node, value_node)}``; reject non-mappings, duplicate/unknown keys."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, f"{path} must be a mapping")
        allowed = tuple(allowed)
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node, f"{path} key")
            if not isinstance(key, str) or not key:
                raise self.fail(key_node, f"{path}: keys must be non-empty strings")
            where = f"{path}.{key}" if path != "policy" else key
            if allowed and key not in allowed:
                kind = "top-level key" if path == "policy" else "key"
                raise self.fail(key_node, f"unknown {kind} {where!r}", hint=_suggest(key, allowed))
            if key in out:
                raise self.fail(key_node, f"duplicate key {where!r}")
            out[key] = (key_node, value_node)
        return out

    def boolean(self, node: yaml.Node, path: str) -> bool:
        """Return a YAML boolean (``true``/``false``)."""
        value = self.value(node, path)
        if not isinstance(value, bool):
            raise self.fail(node, f"{path} must be true or false")
        return value

    def text(self, node: yaml.Node, path: str) -> str:
        """Return a non-empty string (a number is accepted and turned into its text)."""
        value = self.value(node, path)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = node.value
        if not isinstance(value, str) or not value.strip():
            raise self.fail(node, f"{path} must be a non-empty string")
        return value

    def symbols(self, node: yaml.Node, path: str, known: list[str]) -> list[tuple[yaml.Node, str]]:
        """Return the items of a list of enum symbols, each checked against ``known``."""
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{path} must be a list")
        out = []
        for item in node.value:
            value = self.value(item, path)
            if not isinstance(value, str) or value not in known:
                raise self.fail(
                    item, f"{path}: unknown symbol {value!r}", hint=_suggest(str(value), known)
                )
            out.append((item, value))
        return out

    # ------------------------------------------------------------------ the document

    def policy(self, text: str) -> Policy:
        """Parse the whole document."""
        root = compose_plain(text, self.source)
        if root is None:
            raise self.fail(None, "the policy file is empty")
        top = self.mapping(root, "policy", _TOP_KEYS)
        for required in ("purposes", "recipients"):
            if required not in top:
                raise self.fail(root, f"missing required key {required!r}")

        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        version = f"sha256:{digest[:12]}"
        if "version" in top:
            version = self.text(top["version"][1], "version")

        sensitive = DEFAULT_SENSITIVE
        if "sensitive_categories" in top:
            items = self.symbols(
                top["sensitive_categories"][1], "sensitive_categories", _KNOWN_CATEGORIES
            )
            sensitive = frozenset(DataCategory(v) for _, v in items)
            if DataCategory.FACE_BIOMETRIC not in sensitive:
                raise self.fail(
                    top["sensitive_categories"][1],
                    "sensitive_categories must include FACE_BIOMETRIC: face data may only go out"
                    " with the owner's explicit consent",
                    hint="add FACE_BIOMETRIC to the list (or leave the key out for the default)",
                )

        time = TimeBounds()
        if "time" in top:
            spec = self.mapping(top["time"][1], "time", _TIME_KEYS)
            time = TimeBounds(
                *(
                    self.number(spec[k][1], f"time.{k}", positive=False)
                    if k in spec
                    else getattr(time, k)
                    for k in _TIME_KEYS
                )
            )
        recall = DEFAULT_RECALL_WITHIN_DAYS
        if "recall_within_days" in top:
            recall = self.number(top["recall_within_days"][1], "recall_within_days", positive=True)

        purposes = self.purposes(top["purposes"][1], sensitive)
        recipients: dict[str, Recipient] = {}
        for org, (key_node, value_node) in self.mapping(
            top["recipients"][1], "recipients", ()
        ).items():
            recipients[org] = self.recipient(org, key_node, value_node, purposes)

        return Policy(
            version=version,
            fingerprint=f"sha256:{digest}",
            source=self.source,
            sensitive_categories=sensitive,
            purposes=MappingProxyType(purposes),
            recipients=MappingProxyType(recipients),
            time=time,
            default_recall_within_days=recall,
        )

    def purposes(
        self, node: yaml.Node, sensitive: frozenset[DataCategory]
    ) -> dict[Purpose, PurposeRule]:
        """Parse the ``purposes`` section, refusing consent-only data on another basis."""
        out: dict[Purpose, PurposeRule] = {}
        for name, (key_node, value_node) in self.mapping(node, "purposes", ()).items():
            if name not in _KNOWN_PURPOSES:
                raise self.fail(
                    key_node, f"unknown purpose {name!r}", hint=_suggest(name, _KNOWN_PURPOSES)
                )
            path = f"purposes.{name}"
            spec = self.mapping(value_node, path, _PURPOSE_KEYS)
            if "basis" not in spec:
                raise self.fail(value_node, f"{path}: missing required key 'basis'")
            basis_node = spec["basis"][1]
            basis = self.value(basis_node, f"{path}.basis")
            if basis not in {b.value for b in Basis}:
                raise self.fail(
                    basis_node,
                    f"{path}.basis: unknown legal basis {basis!r}",
                    hint="one of: " + ", ".join(b.value for b in Basis),
                )
            if name == Purpose.ML_TRAINING.value and basis != Basis.CONSENT.value:
                raise self.fail(
                    basis_node,
                    f"{path}.basis is {basis!r}, but training or evaluating an AI/ML system on"
                    " people's photos may only rest on their consent",
                    hint="set 'basis: consent' for ML_TRAINING",
                )
            internal_only = False
            if "internal_only" in spec:
                internal_only = self.boolean(spec["internal_only"][1], f"{path}.internal_only")
            carried = frozenset(DataCategory(v) for v in _KNOWN_CATEGORIES)
            if basis != Basis.CONSENT.value:
                carried -= sensitive
            if "categories" in spec:
                carried = frozenset()
                for item, category in self.symbols(
                    spec["categories"][1], f"{path}.categories", _KNOWN_CATEGORIES
                ):
                    if basis != Basis.CONSENT.value and DataCategory(category) in sensitive:
                        raise self.fail(
                            item,
                            f"{path}.categories lists {category}, a sensitive category, but"
                            f" {name}'s basis is {basis!r}: sensitive data may only be processed"
                            " with the owner's explicit consent",
                            hint=f"remove {category} here, or give {name} 'basis: consent'",
                        )
                    carried |= {DataCategory(category)}
            out[Purpose(name)] = PurposeRule(Purpose(name), Basis(basis), internal_only, carried)
        return out

    def recipient(
        self,
        org: str,
        key_node: yaml.Node,
        node: yaml.Node,
        purposes: Mapping[Purpose, PurposeRule],
    ) -> Recipient:
        """Parse one entry of the ``recipients`` section."""
        path = f"recipients.{org}"
        problem = recipient_id_problem(org)
        if problem is not None:
            canonical = canonical_recipient(org)
            raise self.fail(
                key_node,
                f"recipient id {org!r} {problem}",
                hint=f"write it as {canonical!r}"
                if canonical and recipient_id_problem(canonical) is None
                else "recipient ids use only lower-case letters, digits, '.', '_' and '-'",
            )
        spec = self.mapping(node, path, _RECIPIENT_KEYS)
        internal = False
        if "internal" in spec:
            internal = self.boolean(spec["internal"][1], f"{path}.internal")
        agreement = None
        if "agreement" in spec:
            agreement = self.agreement(spec["agreement"][1], f"{path}.agreement")
        allowed: set[Purpose] = set()
        if "purposes" in spec:
            for item, name in self.symbols(
                spec["purposes"][1], f"{path}.purposes", _KNOWN_PURPOSES
            ):
                rule = purposes.get(Purpose(name))
                if rule is None:
                    raise self.fail(
                        item,
                        f"{path}.purposes lists {name}, which is not configured under 'purposes'",
                        hint=f"add {name} with its basis under 'purposes'",
                    )
                if rule.internal_only and not internal:
                    raise self.fail(
                        item,
                        f"{path}.purposes lists {name}, which is internal_only, but {org!r} is not"
                        " internal",
                        hint="remove the purpose or mark the recipient 'internal: true'",
                    )
                allowed.add(rule.purpose)
        bulk = None
        if "bulk_export" in spec:
            bulk = self.bulk_export(spec["bulk_export"][1], f"{path}.bulk_export")
        recall = None
        if "recall_within_days" in spec:
            recall = self.number(
                spec["recall_within_days"][1], f"{path}.recall_within_days", positive=True
            )
        keys = self.ack_keys(spec["ack_keys"][1], f"{path}.ack_keys") if "ack_keys" in spec else {}
        return Recipient(org, internal, agreement, frozenset(allowed), bulk, recall, keys)

    def ack_keys(self, node: yaml.Node, path: str) -> Mapping[str, bytes]:
        """Parse ``ack_keys``: a list of PEM Ed25519 public keys -> ``{key_id: raw key}``."""
        if not isinstance(node, yaml.SequenceNode):
            raise self.fail(node, f"{path} must be a list of PEM Ed25519 public keys")
        keys: dict[str, bytes] = {}
        for item in node.value:
            pem = self.value(item, path)
            if not isinstance(pem, str):
                raise self.fail(item, f"{path}: each key is a PEM text block (use '|')")
            try:
                key_id, raw = parse_ack_key(pem)
            except ValueError as exc:
                raise self.fail(item, f"{path}: {exc}", hint=_PEM_HINT) from None
            keys[key_id] = raw
        return MappingProxyType(keys)

    def agreement(self, node: yaml.Node, path: str) -> Agreement:
        """Parse ``agreement: {id, expires}``."""
        spec = self.mapping(node, path, _AGREEMENT_KEYS)
        if "id" not in spec:
            raise self.fail(node, f"{path}: missing required key 'id'")
        agreement_id = self.text(spec["id"][1], f"{path}.id")
        expires = None
        if "expires" in spec:
            expires = self.day(spec["expires"][1], f"{path}.expires")
        return Agreement(agreement_id, expires)

    def day(self, node: yaml.Node, path: str) -> date:
        """Parse a calendar date written ``YYYY-MM-DD`` (quoted or not)."""
        try:
            value = self.value(node, path)
        except PolicyError:
            value = getattr(node, "value", None)  # looks like a date but is none: 2027-02-30
        if isinstance(value, date) and not isinstance(value, datetime):
            return value
        if isinstance(value, str) and _DATE.fullmatch(value.strip()):
            try:
                return date.fromisoformat(value.strip())
            except ValueError:
                pass
        raise self.fail(
            node,
            f"{path} must be a calendar date YYYY-MM-DD (got {getattr(node, 'value', None)!r})",
        )

    def bulk_export(self, node: yaml.Node, path: str) -> BulkExportLimit:
        """Parse ``bulk_export: {max_photos_per_hour, auto_suspend}``."""
        spec = self.mapping(node, path, _BULK_KEYS)
        if "max_photos_per_hour" not in spec:
            raise self.fail(node, f"{path}: missing required key 'max_photos_per_hour'")
        limit_node = spec["max_photos_per_hour"][1]
        limit = self.value(limit_node, f"{path}.max_photos_per_hour")
        if not isinstance(limit, int) or isinstance(limit, bool) or limit <= 0:
            raise self.fail(limit_node, f"{path}.max_photos_per_hour must be a positive integer")
        auto = False
        if "auto_suspend" in spec:
            auto = self.boolean(spec["auto_suspend"][1], f"{path}.auto_suspend")
        return BulkExportLimit(limit, auto)


_PEM_HINT = "paste the recipient's public key: openssl pkey -in key.pem -pubout"


def _suggest(word: str, choices: Iterable[str]) -> str:
    """Return a hint naming the closest valid choice, or listing them all."""
    choices = list(choices)
    close = difflib.get_close_matches(word, choices, n=1)
    if close:
        return f"did you mean {close[0]!r}?"
    return "expected one of: " + ", ".join(choices)
