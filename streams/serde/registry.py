"""The schema registry adapter and schema registration (``consentinel schemas register``).

Works against any Confluent-API-compatible registry, including Apicurio's ``/apis/ccompat/v7``
(``confluent_kafka``'s :class:`SchemaRegistryClient` accepts a base URL with a path).

Apicurio's compatibility test answers only ``{"is_compatible": false}``, even with
``verbose=true``; it gives its reason only when refusing a registration (HTTP 409). So
:func:`register_schema` tests first and, on "incompatible", makes the registration attempt the
registry is bound to refuse under ``FULL_TRANSITIVE`` to obtain the reason, storing nothing.

Every subject is set to ``FULL_TRANSITIVE`` (contract section 1; ``PUT /config/{subject}``, which
Apicurio 3's ccompat API supports even before the subject's first version): a new version must be
readable with every earlier schema and read every earlier version's data, so producers and readers
upgrade in either order. Dropping a field without a default (the gate needs it) is refused; adding
an optional field with a default is accepted.

**Credentials.** Every client made here authenticates with ``SCHEMA_REGISTRY_USERNAME`` /
``SCHEMA_REGISTRY_PASSWORD`` (:meth:`~streams.settings.Settings.registry_basic_auth`, held as
:class:`~pydantic.SecretStr`), passed explicitly or read from the process settings; never from the
URL: a URL with ``user:password@`` is refused with a :class:`~streams.errors.ConfigError` that does
not repeat it. No message of this module contains the password.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, NamedTuple

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from pydantic import SecretStr

from streams.errors import (
    ConfigError,
    IncompatibleSchemaError,
    RegistryError,
    RegistryUnavailableError,
)
from streams.serde.catalog import Catalog, default_catalog
from streams.serde.wire import unknown_schema_id_error
from streams.topics import value_subject

if TYPE_CHECKING:
    from streams.settings import Settings

COMPATIBILITY = "FULL_TRANSITIVE"
"""The compatibility level the contract requires on every subject."""

Credentials = tuple[str, SecretStr]
"""Registry basic auth: ``(username, password)``."""


class _FromSettings:
    """Marker: take the credentials from the process settings (the default)."""


FROM_SETTINGS: Final = _FromSettings()
"""Default ``credentials``: :meth:`Settings.registry_basic_auth` of the process settings."""

_HINT = "start it with `consentinel stack up`, or set SCHEMA_REGISTRY_URL"
_NOT_FOUND = {40401, 40402, 40403}  # subject, version, schema not found


class RegisteredSubject(NamedTuple):
    """One registration: the subject, the schema's global id, and its version in the subject."""

    subject: str
    schema_id: int
    version: int


def _resolve(credentials: Credentials | _FromSettings | None) -> Credentials | None:
    """Return explicit credentials, or the process settings' when given :data:`FROM_SETTINGS`."""
    if isinstance(credentials, _FromSettings):
        from streams.settings import settings

        return settings().registry_basic_auth()
    return credentials


def make_client(
    client_or_url: SchemaRegistryClient | str,
    *,
    credentials: Credentials | _FromSettings | None = FROM_SETTINGS,
) -> SchemaRegistryClient:
    """Return ``client_or_url`` itself, or a client for that URL that fails fast if unreachable.

    A new client authenticates with ``credentials`` (default: ``SCHEMA_REGISTRY_USERNAME`` /
    ``SCHEMA_REGISTRY_PASSWORD`` of the process settings; ``None``: anonymous).

    Raises:
        ConfigError: the URL carries credentials, or the username contains ``:``.
    """
    if isinstance(client_or_url, SchemaRegistryClient):
        return client_or_url
    from streams.settings import refuse_url_credentials

    for url in client_or_url.split(","):
        refuse_url_credentials(url.strip())
    config: dict[str, object] = {
        "url": client_or_url,
        "max.retries": 2,
        "retries.wait.ms": 200,
        "timeout": 10,
    }
    auth = _resolve(credentials)
    if auth is not None:
        user, password = auth
        if ":" in user:
            raise ConfigError(
                "SCHEMA_REGISTRY_USERNAME must not contain ':' (basic auth cannot carry it)"
            )
        config["basic.auth.user.info"] = f"{user}:{password.get_secret_value()}"
    return SchemaRegistryClient(config)


def _url(client: SchemaRegistryClient) -> str:
    """Best-effort URL of a client, for messages (without user info or query string)."""
    rest = getattr(client, "_rest_client", None)
    urls = getattr(rest, "base_urls", None)
    return _shown(",".join(urls)) if urls else "the schema registry"


def _shown(url: str) -> str:
    """Return ``url`` (maybe a comma-separated list) as messages may show it: no secrets."""
    from streams.settings import display_url

    return ",".join(display_url(one.strip()) for one in url.split(","))


def _failure(url: str, doing: str, exc: Exception) -> RegistryError:
    """Turn any client failure into a :class:`RegistryError` naming the URL."""
    if isinstance(exc, SchemaRegistryError):
        status = getattr(exc, "http_status_code", None)
        if isinstance(status, int) and (status >= 500 or status < 0):
            return RegistryUnavailableError(
                f"schema registry at {url} failed {doing} (HTTP {status}): {exc}", hint=_HINT
            )
        return RegistryError(f"schema registry at {url} refused {doing}: {exc}")
    return RegistryUnavailableError(
        f"schema registry at {url} cannot be reached while {doing}: {type(exc).__name__}: {exc}",
        hint=_HINT,
    )


class RegistrySchemaSource:
    """A :class:`~streams.serde.wire.SchemaSource` backed by a schema registry.

    The underlying client caches by id and by schema; :class:`~streams.serde.wire.AvroCodec`
    caches on top, so each id costs at most one HTTP request per process.
    """

    def __init__(
        self,
        client_or_url: SchemaRegistryClient | str,
        *,
        auto_register: bool = False,
        credentials: Credentials | _FromSettings | None = FROM_SETTINGS,
    ) -> None:
        self._client = make_client(client_or_url, credentials=credentials)
        self._url = _shown(client_or_url) if isinstance(client_or_url, str) else _url(self._client)
        self._auto_register = auto_register

    @classmethod
    def from_settings(
        cls, settings: Settings, *, auto_register: bool = False
    ) -> RegistrySchemaSource:
        """Return a source for ``settings``' registry URL and credentials."""
        return cls(
            settings.schema_registry_url,
            auto_register=auto_register,
            credentials=settings.registry_basic_auth(),
        )

    @property
    def url(self) -> str:
        """The registry's base URL as messages show it (no user info, query or fragment)."""
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
    """Set ``FULL_TRANSITIVE`` on ``subject`` and register ``schema_str`` under it (idempotent).

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


def subject_compatibility(client: SchemaRegistryClient, subject: str) -> str:
    """Return the compatibility level the registry applies to ``subject`` (as it reports it)."""
    try:
        return str(client.get_compatibility(subject))
    except Exception as exc:
        raise _failure(_url(client), f"reading the compatibility of {subject!r}", exc) from exc


def register_all(
    client_or_url: SchemaRegistryClient | str,
    catalog: Catalog | None = None,
    topics: list[str] | None = None,
    *,
    credentials: Credentials | _FromSettings | None = FROM_SETTINGS,
) -> list[RegisteredSubject]:
    """Register each topic's schema under ``<topic>-value`` with ``FULL_TRANSITIVE`` compatibility.

    Args:
        client_or_url: A registry client or its base URL.
        credentials: Basic auth for a new client (default: the process settings').
        catalog: The local schemas (default :func:`~streams.serde.catalog.default_catalog`).
        topics: The topics to register (default: every topic of the catalog, in its order).

    Returns:
        One :class:`RegisteredSubject` (``subject, schema_id, version``) per topic, in order.
    """
    client = make_client(client_or_url, credentials=credentials)
    cat = catalog if catalog is not None else default_catalog()
    wanted = topics if topics is not None else list(cat.topics)
    return [
        register_schema(client, value_subject(topic), cat.for_topic(topic).schema_str)
        for topic in wanted
    ]
