"""``deploy/acls.yaml`` read into a plan: the SCRAM principals and every ACL they should have.

:func:`load_acl_plan` expands the file's short form (a principal's topics, groups and
transactional ids, with the deployment's topic prefix) into exact :class:`Acl` entries, and
refuses a file it cannot read with the file and the entry in the message. Applying the plan to a
broker is :mod:`streams.admin.acls`.

Deployments side by side (contract section 6): with a topic prefix, every principal of the file
is ``<prefix><name>`` (``staging.consentinel-gate``), a SCRAM user of its own, so one deployment's
credentials hold no right on another's topics. A plan manages exactly the ACLs whose principal is
one of its own principals, compared as whole names: the unprefixed deployment never touches
``User:staging.egress``, and prefix ``prod`` never touches ``prod2.`` (``User:prodegress`` is not
``User:prod2.egress``). Super users are never prefixed: they are the broker's, not a deployment's.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclOperation,
    AclPermissionType,
    ResourcePatternType,
    ResourceType,
)

from streams.errors import ConfigError
from streams.resources import acls_file

ACLS_FILE = acls_file()
"""The principals and ACLs shipped with the package (``deploy/acls.yaml`` in a checkout)."""
CLUSTER = "kafka-cluster"
"""The name of Kafka's one cluster resource."""
TIMEOUT_S = 15.0
"""Bound of each admin request and of waiting for a change to take effect on the broker."""

_TOPIC_OPERATIONS = {
    "read": AclOperation.READ,
    "write": AclOperation.WRITE,
    "create": AclOperation.CREATE,
    "describe": AclOperation.DESCRIBE,
    "describe_configs": AclOperation.DESCRIBE_CONFIGS,
}
PRINCIPAL_KEYS = frozenset(
    {
        "does",
        "read",
        "write",
        "create",
        "describe_configs",
        "topic_prefixes",
        "groups",
        "group_prefixes",
        "transactional_id_prefixes",
        "idempotent_write",
    }
)
_RESOURCE_LABEL = {
    ResourceType.TOPIC: "topic",
    ResourceType.GROUP: "group",
    ResourceType.TRANSACTIONAL_ID: "transactional-id",
    ResourceType.BROKER: "cluster",
}


class Acl(NamedTuple):
    """One ALLOW rule, comparable with what the broker describes."""

    principal: str
    operation: AclOperation
    resource_type: ResourceType
    name: str
    pattern: ResourcePatternType
    host: str = "*"

    def binding(self) -> AclBinding:
        """Return the confluent-kafka binding of this rule."""
        return AclBinding(
            self.resource_type,
            self.name,
            self.pattern,
            self.principal,
            self.host,
            self.operation,
            AclPermissionType.ALLOW,
        )

    def describe(self) -> str:
        """Return e.g. ``User:egress READ topic:photo.share.approved`` (``name*`` if prefixed)."""
        star = "*" if self.pattern == ResourcePatternType.PREFIXED else ""
        where = _RESOURCE_LABEL.get(self.resource_type, self.resource_type.name.lower())
        host = "" if self.host == "*" else f" from {self.host}"
        return f"{self.principal} {self.operation.name} {where}:{self.name}{star}{host}"


@dataclass(frozen=True)
class AclPlan:
    """What ``acls.yaml`` declares, with the deployment's topic prefix applied."""

    principals: tuple[str, ...]
    """Principals that get a SCRAM user and ACLs (bare names with the prefix, no ``User:``)."""
    super_users: tuple[str, ...]
    acls: frozenset[Acl]
    prefix: str = ""
    unprefixed_names: frozenset[str] = field(default_factory=frozenset)

    def principal(self, name: str) -> str:
        """Return this deployment's principal for ``name``; super users stay as they are.

        ``name`` may be ``egress``, ``User:egress`` or already ``<prefix>egress``.

        Raises:
            ConfigError: ``name`` is neither a principal of the file nor a super user.
        """
        bare = name.removeprefix("User:")
        if bare in self.super_users or bare in self.principals:
            return bare
        if self.prefix + bare in self.principals:
            return self.prefix + bare
        known = sorted({*self.super_users, *(p.removeprefix(self.prefix) for p in self.principals)})
        where = f" (topic prefix {self.prefix!r})" if self.prefix else ""
        raise ConfigError(
            f"unknown principal {name!r}{where}",
            hint=f"one of: {', '.join(known)} (declared in deploy/acls.yaml)",
        )

    def manages(self, acl: Acl) -> bool:
        """Return whether ``acl`` is in this plan's scope (so undeclared means deleted).

        The scope is this deployment's own principals, matched as whole names, whatever the
        resource: another deployment's principals (another prefix, or none) are never in it.
        """
        return acl.principal in {f"User:{p}" for p in self.principals}

    def changes(self, current: Iterable[Acl]) -> tuple[list[Acl], list[Acl]]:
        """Return ``(missing, extra)``: ACLs to create, and ACLs in scope to delete, sorted."""
        ours = {acl for acl in current if self.manages(acl)}
        missing = sorted(self.acls - ours, key=Acl.describe)
        extra = sorted(ours - self.acls, key=Acl.describe)
        return missing, extra


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of names", hint="fix deploy/acls.yaml")
    return list(value)


_LIT = ResourcePatternType.LITERAL
_PRE = ResourcePatternType.PREFIXED


def _expand_principal(user: str, body: Any, prefix: str, where: str) -> tuple[set[Acl], set[str]]:
    """Return one principal's ACLs and the names it declares without the topic prefix."""
    if not isinstance(body, dict):
        raise ConfigError(f"{where} must be a mapping")
    unknown = set(body) - PRINCIPAL_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}",
            hint=f"known keys: {', '.join(sorted(PRINCIPAL_KEYS))}",
        )
    acls: set[Acl] = set()
    unprefixed: set[str] = set()
    for key in ("read", "write", "create", "describe_configs"):
        for topic in _names(body.get(key), f"{where}: {key}"):
            acls.add(Acl(user, _TOPIC_OPERATIONS[key], ResourceType.TOPIC, prefix + topic, _LIT))
    topic_prefixes = body.get("topic_prefixes") or {}
    if not isinstance(topic_prefixes, dict):
        raise ConfigError(f"{where}: topic_prefixes must map a prefix to operations")
    for topic_prefix, ops in topic_prefixes.items():
        for op in _names(ops, f"{where}: topic_prefixes.{topic_prefix}"):
            if op not in _TOPIC_OPERATIONS:
                raise ConfigError(
                    f"{where}: unknown operation {op!r} for topic prefix {topic_prefix}",
                    hint=f"one of {', '.join(_TOPIC_OPERATIONS)}",
                )
            acls.add(
                Acl(user, _TOPIC_OPERATIONS[op], ResourceType.TOPIC, prefix + topic_prefix, _PRE)
            )
    for group in body.get("groups") or []:
        if isinstance(group, dict) and "name" in group and set(group) <= {"name", "prefixed"}:
            literal = str(group["name"])
            if group.get("prefixed", True):
                literal = prefix + literal
            else:
                unprefixed.add(literal)
        elif isinstance(group, str) and group:
            literal = prefix + group
        else:
            raise ConfigError(f"{where}: a group is a name or {{name: ..., prefixed: false}}")
        acls.add(Acl(user, AclOperation.READ, ResourceType.GROUP, literal, _LIT))
    for group in _names(body.get("group_prefixes"), f"{where}: group_prefixes"):
        acls.add(Acl(user, AclOperation.READ, ResourceType.GROUP, prefix + group, _PRE))
    for tid in _names(body.get("transactional_id_prefixes"), f"{where}: transactional_ids"):
        acls.add(Acl(user, AclOperation.WRITE, ResourceType.TRANSACTIONAL_ID, prefix + tid, _PRE))
    if body.get("idempotent_write"):
        acls.add(Acl(user, AclOperation.IDEMPOTENT_WRITE, ResourceType.BROKER, CLUSTER, _LIT))
    return acls, unprefixed


def load_acl_plan(path: Path = ACLS_FILE, *, prefix: str = "") -> AclPlan:
    """Read ``acls.yaml`` and expand it into ACLs for a deployment with topic prefix ``prefix``.

    Every principal ``name`` of the file becomes ``<prefix><name>``, in :attr:`AclPlan.principals`
    and in its ACLs; super users are not prefixed.

    Raises:
        ConfigError: the file is unreadable or names an unknown key or operation.
    """
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read ACL file {path}: {exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("principals"), dict):
        raise ConfigError(f"{path} needs a `principals:` mapping", hint="see deploy/acls.yaml")
    supers = tuple(_names(doc.get("super_users"), f"{path}: super_users"))
    acls: set[Acl] = set()
    unprefixed: set[str] = set()
    principals: list[str] = []
    for name, body in doc["principals"].items():
        where = f"{path}: principal {name}"
        if name in supers or prefix + name in supers:
            raise ConfigError(f"{where} is a super user; it needs no ACLs")
        principals.append(prefix + name)
        granted, fixed = _expand_principal(f"User:{prefix}{name}", body or {}, prefix, where)
        acls |= granted
        unprefixed |= fixed
    return AclPlan(
        principals=tuple(principals),
        super_users=supers,
        acls=frozenset(acls),
        prefix=prefix,
        unprefixed_names=frozenset(unprefixed),
    )
