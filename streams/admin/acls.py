"""``consentinel acls apply``: make the broker's SCRAM users and ACLs match ``deploy/acls.yaml``.

Run as the super user (``admin``). Idempotent: it creates each declared principal's SCRAM-SHA-512
user (password from the 0600 password file, generated once) and every declared ACL, deletes the
ACLs of declared principals that the file no longer lists, and reports each change as one line:
``+ ACL ...``, ``- ACL ...``, ``+ SCRAM user ...``; a second run prints ``= up to date``.

With ``CONSENTINEL_TOPIC_PREFIX`` set, the principals are ``<prefix><name>``
(:mod:`streams.admin.acl_plan`): each deployment has SCRAM users of its own, and the scope of
creation and deletion is exactly that deployment's principals (super users excluded), so two
deployments (or a prefixed one and the unprefixed one) can share a cluster without touching each
other's ACLs. Nothing here ever puts a password in a message.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ConfigResource,
    ResourcePatternType,
    ResourceType,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialAlteration,
    UserScramCredentialUpsertion,
)

from streams.admin.acl_plan import (
    TIMEOUT_S,
    Acl,
    AclPlan,
    load_acl_plan,
)
from streams.errors import ConfigError, StackError
from streams.stack.secure import SCRAM_ITERATIONS, PasswordStore, can_authenticate, quiet

_ANY_NAME: Any = None
"""A filter's wildcard for a string attribute (typed ``str`` in the stubs, ``None`` at run time)."""


def _acl_of(binding: AclBinding) -> Acl | None:
    if binding.permission_type != AclPermissionType.ALLOW:
        return None  # DENY rules are never ours: leave them alone
    return Acl(
        binding.principal,
        AclOperation(binding.operation),
        ResourceType(binding.restype),
        binding.name,
        ResourcePatternType(binding.resource_pattern_type),
        binding.host,
    )


def _admin_failure(exc: BaseException, what: str, where: str) -> StackError | ConfigError:
    text = str(exc.args[0].str() if isinstance(exc, KafkaException) and exc.args else exc)
    if "SECURITY_DISABLED" in text or "No Authorizer" in text or "no authorizer" in text.lower():
        return ConfigError(
            f"the broker at {where} has no authorizer, so it cannot hold ACLs ({what})",
            hint="point KAFKA_BOOTSTRAP_SERVERS at the secure broker: "
            '`consentinel stack up --secure` then `eval "$(consentinel stack credentials admin)"`',
        )
    if "AUTHORIZATION" in text.upper():
        return ConfigError(
            f"the principal we run as may not {what} at {where} ({text})",
            hint="run `consentinel acls apply` as the super user admin: "
            '`eval "$(consentinel stack credentials admin)"`',
        )
    return StackError(f"could not {what} at {where}: {text}", hint="is the broker up?")


@dataclass
class AclApplier:
    """Applies an :class:`AclPlan` through an AdminClient connected as a super user."""

    admin: AdminClient
    client_config: dict[str, Any]
    """The admin's librdkafka settings; principals' logins reuse them with their own names."""
    passwords: PasswordStore
    say: Callable[[str], None] = print
    timeout_s: float = TIMEOUT_S

    @property
    def where(self) -> str:
        """The broker address, for messages."""
        return str(self.client_config.get("bootstrap.servers", "the broker"))

    # -- checks before any change ---------------------------------------------------------------
    def check_broker(self) -> None:
        """Refuse, before changing anything, unless we are a super user of a broker with ACLs.

        Asks which cluster operations our principal may perform (``ALTER`` is needed for ACLs and
        SCRAM users) and whether the broker runs an authorizer (``authorizer.class.name``): a
        broker without one would take the SCRAM users and then refuse every ACL.

        Raises:
            ConfigError: not a super user, or the broker has no authorizer.
            StackError: the broker did not answer.
        """
        try:
            cluster = self.admin.describe_cluster(
                include_authorized_operations=True, request_timeout=self.timeout_s
            ).result(timeout=self.timeout_s)
        except Exception as exc:
            raise _admin_failure(exc, "describe the cluster", self.where) from None
        allowed = set(cluster.authorized_operations or ())
        if AclOperation.ALTER not in allowed or AclOperation.DESCRIBE not in allowed:
            raise ConfigError(
                f"the principal we run as ({self.client_config.get('sasl.username', 'anonymous')})"
                f" may not manage ACLs and SCRAM users at {self.where}",
                hint="run `consentinel acls apply` as the super user admin: "
                '`eval "$(consentinel stack credentials admin)"`',
            )
        node = cluster.controller or (cluster.nodes[0] if cluster.nodes else None)
        if node is None:
            raise StackError(f"the cluster at {self.where} reported no broker")
        resource = ConfigResource(ResourceType.BROKER, str(node.id))
        try:
            configs = self.admin.describe_configs([resource], request_timeout=self.timeout_s)
            entries = configs[resource].result(timeout=self.timeout_s)
        except Exception as exc:
            raise _admin_failure(exc, "describe the broker's configuration", self.where) from None
        authorizer = entries.get("authorizer.class.name")
        if authorizer is None or not authorizer.value:
            raise _admin_failure(
                RuntimeError("SECURITY_DISABLED"), "authorizer.class.name is empty", self.where
            )

    # -- SCRAM users ----------------------------------------------------------------------------
    def _existing_users(self, users: list[str]) -> set[str]:
        try:
            # Only after check_broker: confluent-kafka 2.16 crashes the process when this request
            # is refused (CLUSTER_AUTHORIZATION_FAILED).
            future = self.admin.describe_user_scram_credentials(
                None, request_timeout=self.timeout_s
            )
            assert not isinstance(future, dict)  # one future when users is None
            result = future.result(timeout=self.timeout_s)
        except Exception as exc:
            raise _admin_failure(exc, "describe SCRAM users", self.where) from None
        found = set()
        for user, description in result.items():
            mechanisms = {info.mechanism for info in description.scram_credential_infos}
            if user in users and ScramMechanism.SCRAM_SHA_512 in mechanisms:
                found.add(user)
        return found

    def _login_config(self, user: str, password: str) -> dict[str, Any]:
        config = {
            k: v
            for k, v in self.client_config.items()
            if k not in ("logger", "error_cb", "stats_cb", "oauth_cb")
        }
        config.update(
            {"sasl.mechanism": "SCRAM-SHA-512", "sasl.username": user, "sasl.password": password}
        )
        return config

    def apply_users(self, users: Iterable[str]) -> list[str]:
        """Create or repair each user's SCRAM-SHA-512 credential; return the change lines."""
        users = list(users)
        passwords = self.passwords.ensure(users)
        existing = self._existing_users(users)
        changes: list[tuple[str, str]] = []
        for user in users:
            if user in existing and can_authenticate(
                self._login_config(user, passwords[user]), timeout_s=5.0
            ):
                continue
            changes.append((user, "~" if user in existing else "+"))
        if not changes:
            return []
        upserts: list[UserScramCredentialAlteration] = [
            UserScramCredentialUpsertion(
                user,
                ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, SCRAM_ITERATIONS),
                passwords[user].encode(),
            )
            for user, _ in changes
        ]
        futures = self.admin.alter_user_scram_credentials(upserts, request_timeout=self.timeout_s)
        for user, future in futures.items():
            try:
                future.result(timeout=self.timeout_s)
            except Exception as exc:
                raise _admin_failure(
                    exc, f"set the SCRAM credential of {user}", self.where
                ) from None
        lines = []
        for user, mark in changes:
            deadline = time.monotonic() + self.timeout_s
            while not can_authenticate(self._login_config(user, passwords[user]), timeout_s=2.0):
                if time.monotonic() > deadline:
                    raise StackError(
                        f"SCRAM user {user} was written but cannot log in at {self.where} "
                        f"after {self.timeout_s:.0f}s",
                        hint="read the broker's log; run `consentinel acls apply` again",
                    )
            what = "password reset" if mark == "~" else "created"
            lines.append(f"{mark} SCRAM user {user} ({what}, SCRAM-SHA-512)")
        return lines

    # -- ACLs -----------------------------------------------------------------------------------
    def current_acls(self) -> set[Acl]:
        """Return every ALLOW ACL on the broker."""
        every = AclBindingFilter(
            ResourceType.ANY,
            _ANY_NAME,
            ResourcePatternType.ANY,
            _ANY_NAME,
            _ANY_NAME,
            AclOperation.ANY,
            AclPermissionType.ANY,
        )
        try:
            bindings = self.admin.describe_acls(every, request_timeout=self.timeout_s).result(
                timeout=self.timeout_s
            )
        except Exception as exc:
            raise _admin_failure(exc, "describe ACLs", self.where) from None
        return {acl for acl in map(_acl_of, bindings) if acl is not None}

    def apply_acls(self, plan: AclPlan) -> list[str]:
        """Create the missing ACLs of ``plan`` and delete the undeclared ones in its scope."""
        missing, extra = plan.changes(self.current_acls())
        lines: list[str] = []
        if missing:
            futures = self.admin.create_acls(
                [acl.binding() for acl in missing], request_timeout=self.timeout_s
            )
            for binding, future in futures.items():
                try:
                    future.result(timeout=self.timeout_s)
                except Exception as exc:
                    raise _admin_failure(exc, f"create ACL {binding}", self.where) from None
            lines += [f"+ ACL {acl.describe()}" for acl in missing]
        if extra:
            filters = [
                AclBindingFilter(
                    acl.resource_type,
                    acl.name,
                    acl.pattern,
                    acl.principal,
                    acl.host,
                    acl.operation,
                    AclPermissionType.ALLOW,
                )
                for acl in extra
            ]
            for binding_filter, future in self.admin.delete_acls(
                filters, request_timeout=self.timeout_s
            ).items():
                try:
                    future.result(timeout=self.timeout_s)
                except Exception as exc:
                    raise _admin_failure(exc, f"delete ACL {binding_filter}", self.where) from None
            lines += [f"- ACL {acl.describe()}" for acl in extra]
        if lines:
            self._wait_visible(plan, extra)
        return lines

    def _wait_visible(self, plan: AclPlan, deleted: list[Acl]) -> None:
        """Wait until the broker's authorizer shows the plan (changes go via the metadata log)."""
        deadline = time.monotonic() + self.timeout_s
        while True:
            now = self.current_acls()
            if plan.acls <= now and not (set(deleted) & now):
                return
            if time.monotonic() > deadline:
                raise StackError(
                    f"the ACL changes did not show on {self.where} within {self.timeout_s:.0f}s",
                    hint="run `consentinel acls apply` again; read the broker's log",
                )
            time.sleep(0.2)

    def apply(self, plan: AclPlan) -> list[str]:
        """Apply users then ACLs; print and return every change line (``= up to date`` if none)."""
        self.check_broker()
        lines = self.apply_users(plan.principals) + self.apply_acls(plan)
        for line in lines:
            self.say(line)
        self.say(f"acls: {len(lines)} change(s)" if lines else "= up to date")
        return lines


def apply_from_settings(
    kafka_config: dict[str, Any],
    *,
    acls_path: Path,
    passwords_path: Path,
    prefix: str,
    say: Callable[[str], None] = print,
) -> list[str]:
    """Apply ``acls_path`` to the broker of ``kafka_config`` (a super user's settings)."""
    plan = load_acl_plan(acls_path, prefix=prefix)
    config = quiet(kafka_config)
    applier = AclApplier(AdminClient(config), kafka_config, PasswordStore(passwords_path), say=say)
    return applier.apply(plan)
