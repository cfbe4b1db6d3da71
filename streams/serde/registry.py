"""The schema registry adapter and schema registration (``consentinel schemas register``).

Works against any Confluent-API-compatible registry, including Apicurio's ``/apis/ccompat/v7``
(``confluent_kafka``'s :class:`SchemaRegistryClient` accepts a base URL with a path).

Apicurio's compatibility test answers only ``{"is_compatible": false}``, even with
``verbose=true``; it gives its reason only when refusing a registration (HTTP 409). So
:func:`register_schema` tests first and, on "incompatible", makes the registration attempt the
registry is bound to refuse under ``BACKWARD`` to obtain the reason, without storing anything.
"""

from __future__ import annotations

from typing import NamedTuple

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError

from streams.errors import IncompatibleSchemaError, RegistryError
from streams.serde.catalog import Catalog, default_catalog
from streams.serde.wire import unknown_schema_id_error
from streams.topics import value_subject

COMPATIBILITY = "BACKWARD"
"""The compatibility level the contract requires on every subject."""

_HINT = "start it with `consentinel stack up`, or set SCHEMA_REGISTRY_URL"
_NOT_FOUND = {40401, 40402, 40403}  # subject, version, schema not found


class RegisteredSubject(NamedTuple):
    """One registration: the subject, the schema's global id, and its version in the subject."""

    subject: str
    schema_id: int
    version: int


def make_client(client_or_url: SchemaRegistryClient | str) -> SchemaRegistryClient:
    """Return ``client_or_url`` itself, or a client for that URL that fails fast if unreachable."""
    if isinstance(client_or_url, SchemaRegistryClient):
        return client_or_url
    return SchemaRegistryClient(
        {"url": client_or_url, "max.retries": 2, "retries.wait.ms": 200, "timeout": 10}
    )


def _url(client: SchemaRegistryClient) -> str:
    """Best-effort URL of a client, for messages."""
    rest = getattr(client, "_rest_client", None)
    urls = getattr(rest, "base_urls", None)
    return ",".join(urls) if urls else "the schema registry"


def _failure(url: str, doing: str, exc: Exception) -> RegistryError:
    """Turn any client failure into a :class:`RegistryError` naming the URL."""
    if isinstance(exc, SchemaRegistryError):
        return RegistryError(f"schema registry at {url} refused {doing}: {exc}")
    return RegistryError(
        f"schema registry at {url} cannot be reached while {doing}: {type(exc).__name__}: {exc}",
        hint=_HINT,
    )


class RegistrySchemaSource:
    """A :class:`~streams.serde.wire.SchemaSource` backed by a schema registry.

    The underlying client caches by id and by schema; :class:`~streams.serde.wire.AvroCodec`
    caches on top, so each id costs at most one HTTP request per process.
    """

    def __init__(
        self, client_or_url: SchemaRegistryClient | str, *, auto_register: bool = False
    ) -> None:
        self._client = make_client(client_or_url)
        self._url = client_or_url if isinstance(client_or_url, str) else _url(self._client)
        self._auto_register = auto_register

    @property
    def url(self) -> str:
        """The registry's base URL."""
        return self._url

    @property
    def client(self) -> SchemaRegistryClient:
        """The underlying client."""
        return self._client

    def schema_for_id(self, schema_id: int) -> str:
        """Return the schema text of ``schema_id``; :class:`UnknownSchemaIdError` if none."""
        try:
            schema = self._client.get_schema(schema_id)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                raise unknown_schema_id_error(schema_id, self._url) from exc
            raise _failure(self._url, f"schema id {schema_id}", exc) from exc
        except Exception as exc:
            raise _failure(self._url, f"fetching schema id {schema_id}", exc) from exc
        if schema.schema_str is None:
            raise RegistryError(
                f"schema registry at {self._url} returned no text for id {schema_id}"
            )
        return str(schema.schema_str)

    def id_for(self, subject: str, schema_str: str) -> int:
        """Return the id of ``schema_str`` under ``subject`` (registering it if auto_register)."""
        schema = Schema(schema_str, "AVRO")
        try:
            found = self._client.lookup_schema(subject, schema).schema_id
            if found is not None:
                return int(found)
        except SchemaRegistryError as exc:
            if exc.error_code not in _NOT_FOUND:
                raise _failure(self._url, f"looking up {subject!r}", exc) from exc
        except Exception as exc:
            raise _failure(self._url, f"looking up {subject!r}", exc) from exc
        if not self._auto_register:
            raise RegistryError(
                f"our schema for {subject!r} is not registered at {self._url}",
                hint="run `consentinel schemas register` first",
            )
        return register_schema(self._client, subject, schema_str).schema_id


def register_schema(
    client: SchemaRegistryClient, subject: str, schema_str: str
) -> RegisteredSubject:
    """Set ``BACKWARD`` on ``subject`` and register ``schema_str`` under it (idempotent).

    Raises:
        IncompatibleSchemaError: the registry finds the schema incompatible; carries its reason.
        RegistryError: the registry is unreachable or refuses for another reason.
    """
    url = _url(client)
    schema = Schema(schema_str, "AVRO")
    try:
        client.set_compatibility(subject, COMPATIBILITY)
        compatible = _test_compatibility(client, subject, schema)
    except SchemaRegistryError as exc:
        raise _failure(url, f"checking {subject!r}", exc) from exc
    except Exception as exc:
        raise _failure(url, f"checking {subject!r}", exc) from exc
    try:
        client.register_schema(subject, schema)
        registered = client.lookup_schema(subject, schema)
    except SchemaRegistryError as exc:
        if exc.http_status_code == 409:
            raise IncompatibleSchemaError(
                f"schema for {subject!r} is incompatible ({COMPATIBILITY}) with the registered"
                f" versions at {url}: {exc.error_message}",
                hint="add fields only with defaults; never rename or remove a contract field",
            ) from exc
        raise _failure(url, f"registering under {subject!r}", exc) from exc
    except Exception as exc:
        raise _failure(url, f"registering under {subject!r}", exc) from exc
    if not compatible:
        raise IncompatibleSchemaError(
            f"registry at {url} reported the schema for {subject!r} incompatible, yet accepted"
            f" it as id {registered.schema_id}",
            hint=f"check the subject's compatibility level is {COMPATIBILITY}",
        )
    return RegisteredSubject(subject, int(registered.schema_id or 0), int(registered.version or 0))


def _test_compatibility(client: SchemaRegistryClient, subject: str, schema: Schema) -> bool:
    """Return the registry's verdict on registering ``schema``; a new subject is compatible."""
    try:
        return bool(client.test_compatibility(subject, schema, verbose=True))
    except SchemaRegistryError as exc:
        if exc.error_code in _NOT_FOUND:
            return True
        raise


def register_all(
    client_or_url: SchemaRegistryClient | str,
    catalog: Catalog | None = None,
    topics: list[str] | None = None,
) -> list[RegisteredSubject]:
    """Register each topic's schema under ``<topic>-value`` with ``BACKWARD`` compatibility.

    Args:
        client_or_url: A registry client or its base URL.
        catalog: The local schemas (default :func:`~streams.serde.catalog.default_catalog`).
        topics: The topics to register (default: every topic of the catalog, in its order).

    Returns:
        One :class:`RegisteredSubject` (``subject, schema_id, version``) per topic, in order.
    """
    client = make_client(client_or_url)
    cat = catalog if catalog is not None else default_catalog()
    wanted = topics if topics is not None else list(cat.topics)
    return [
        register_schema(client, value_subject(topic), cat.for_topic(topic).schema_str)
        for topic in wanted
    ]
