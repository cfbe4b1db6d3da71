"""The one exception hierarchy of Consentinel.

Every error raised on purpose by this package derives from :class:`ConsentinelError`. Each carries a
message that says what went wrong *and* what a person can do about it, plus, where it applies, an
``error_kind`` used verbatim as the ``error_kind`` of a dead-letter record and as the ``kind`` label
of the dead-letter counter (a small, fixed vocabulary).
"""

from __future__ import annotations


class ConsentinelError(Exception):
    """Base class of every error Consentinel raises on purpose."""

    error_kind: str = "INTERNAL"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} ({hint})" if hint else message)


class TransientError(ConsentinelError):
    """A dependency is unreachable for now (broker, registry): retry, never dead-letter.

    A stream processor that meets one stops the batch, aborts its transaction and tries the
    same records again after a back-off; the record is not bad, the moment is.
    """

    error_kind = "TRANSIENT"


class ConfigError(ConsentinelError):
    """Settings or a file given at start-up are invalid; the process refuses to start."""

    error_kind = "CONFIG"


class PolicyError(ConfigError):
    """The policy file is invalid. The message names the file, line and key."""

    error_kind = "POLICY"


class StackError(ConsentinelError):
    """The local Kafka/registry stack cannot be installed, started, stopped or reached."""

    error_kind = "STACK"


class RegistryError(ConsentinelError):
    """The schema registry refused a request or cannot be reached."""

    error_kind = "REGISTRY"


class RegistryUnavailableError(RegistryError, TransientError):
    """The schema registry cannot be reached or answered with a server error (retry later)."""

    error_kind = "REGISTRY_UNAVAILABLE"


class IncompatibleSchemaError(RegistryError):
    """The registry rejected a schema as incompatible with the subject's earlier versions."""

    error_kind = "INCOMPATIBLE_SCHEMA"


class MissingTopicError(StackError):
    """A topic a processor reads or writes does not exist; the process stays not ready."""

    error_kind = "MISSING_TOPIC"


class AuthorizationError(ConfigError):
    """The broker refuses this principal an operation it needs (an ACL is missing)."""

    error_kind = "AUTHORIZATION"


class TopicLayoutError(ConsentinelError):
    """The topics on the broker do not match what Consentinel needs (e.g. partition counts)."""

    error_kind = "TOPIC_LAYOUT"


class SerdeError(ConsentinelError):
    """A value could not be serialized or deserialized."""

    error_kind = "SERDE"


class UndecodableBytesError(SerdeError):
    """The bytes are not in the Confluent wire format (no magic byte, or too short)."""

    error_kind = "UNDECODABLE_BYTES"


class UnknownSchemaIdError(SerdeError):
    """The value names a schema id the registry does not know."""

    error_kind = "UNKNOWN_SCHEMA_ID"


class SchemaMismatchError(SerdeError):
    """The Avro body does not match its writer schema, or the record does not match ours."""

    error_kind = "SCHEMA_MISMATCH"


class InvalidEventError(ConsentinelError):
    """An event decoded, but its content breaks the contract (missing id, unknown symbol...)."""

    error_kind = "INVALID_EVENT"


class UnknownEnumSymbolError(InvalidEventError):
    """An enum field holds a symbol this version does not understand (read as ``UNKNOWN``)."""

    error_kind = "UNKNOWN_ENUM_SYMBOL"


class InvalidTimeError(InvalidEventError):
    """An input's ``occurred_at`` is outside the bounds the policy trusts producers' clocks to.

    Ahead of the broker's append time by more than ``time.max_skew_s``, or behind it by more than
    ``time.max_lateness_s`` (contract section 3). Dead-lettered, never decided.
    """

    error_kind = "INVALID_TIME"


class MisroutedError(InvalidEventError):
    """An input's key is not its owner's id, or it sits on another partition than murmur2(key).

    Deciding it would ignore the user's consents, which live on the right partition.
    """

    error_kind = "MISROUTED"


class UnknownRecipientError(InvalidEventError):
    """A ``ConsentChanged`` names a recipient the policy does not register (after normalization).

    Kept, it would withdraw (or grant) nothing the gate ever compares it with; dead-lettered, a
    person sees it (contract section 3, "Recipient ids").
    """

    error_kind = "UNKNOWN_RECIPIENT"


class DuplicateEventError(InvalidEventError):
    """An ``event_id`` seen before with *different* content (an exact duplicate is no error)."""

    error_kind = "DUPLICATE_EVENT_ID"


class SigningKeyError(ConfigError):
    """A signing or verification key file is missing, unreadable or not an Ed25519 key."""

    error_kind = "SIGNING_KEY"


class DeliveryError(ConsentinelError):
    """Kafka did not acknowledge a produced record."""

    error_kind = "DELIVERY"


class UnverifiedAckError(InvalidEventError):
    """A ``RecallAcknowledged`` that does not count (it closes nothing).

    Unsigned, signed by a key the policy does not list for its recipient, keyed by another
    recipient, or naming an order not issued to it.
    """

    error_kind = "UNVERIFIED_ACK"
