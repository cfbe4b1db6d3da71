"""Typed settings read once from the environment and validated at start-up.

Names follow the contract (``KAFKA_BOOTSTRAP_SERVERS``, ``SCHEMA_REGISTRY_URL``,
``CONSENTINEL_POLICY``, ``METRICS_PORT`` and the ``KAFKA_SECURITY_*``, ``KAFKA_SASL_*`` and
``KAFKA_SSL_*`` families).
Secrets are held as :class:`pydantic.SecretStr` so they never appear in logs or ``repr``.
"""

from __future__ import annotations

import socket
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from streams.errors import ConfigError
from streams.runtime.options import RuntimeOptions
from streams.secretfile import refuse_shared_secret_file

SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"]


class Settings(BaseSettings):
    """Everything a Consentinel process reads from its environment."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore", frozen=True)

    kafka_bootstrap_servers: str = Field("localhost:9092", alias="KAFKA_BOOTSTRAP_SERVERS")
    schema_registry_url: str = Field(
        "http://localhost:8081/apis/ccompat/v7", alias="SCHEMA_REGISTRY_URL"
    )
    policy_path: Path | None = Field(None, alias="CONSENTINEL_POLICY")
    metrics_port: int | None = Field(None, alias="METRICS_PORT", ge=0, le=65535)
    kafka_security_protocol: SecurityProtocol = Field("PLAINTEXT", alias="KAFKA_SECURITY_PROTOCOL")
    kafka_sasl_mechanism: SaslMechanism | None = Field(None, alias="KAFKA_SASL_MECHANISM")
    kafka_sasl_username: str | None = Field(None, alias="KAFKA_SASL_USERNAME")
    kafka_sasl_password: SecretStr | None = Field(None, alias="KAFKA_SASL_PASSWORD")
    kafka_ssl_ca_location: str | None = Field(None, alias="KAFKA_SSL_CA_LOCATION")
    """CA certificate(s) that sign the brokers' certificates (``SSL``/``SASL_SSL``)."""
    kafka_ssl_certificate_location: str | None = Field(None, alias="KAFKA_SSL_CERTIFICATE_LOCATION")
    """The client's certificate, for mutual TLS."""
    kafka_ssl_key_location: str | None = Field(None, alias="KAFKA_SSL_KEY_LOCATION")
    """The client's private key file, for mutual TLS."""
    kafka_ssl_key_password: SecretStr | None = Field(None, alias="KAFKA_SSL_KEY_PASSWORD")
    """The private key's password; never logged."""
    instance_id: str = Field(default_factory=socket.gethostname, alias="CONSENTINEL_INSTANCE_ID")
    state_store: Literal["memory", "rocksdb"] = Field("memory", alias="CONSENTINEL_STATE_STORE")
    state_dir: Path = Field(Path("./.consentinel/state"), alias="CONSENTINEL_STATE_DIR")
    decision_clock: Literal["wall", "stream"] = Field("wall", alias="CONSENTINEL_DECISION_CLOCK")
    """What the gate stamps ``decided_at`` with: its wall clock (production), or the partition's
    stream time (a replay or a simulation, so that detectors judge it in its own time)."""
    unknown_photo_grace_ms: int = Field(
        2_000, ge=0, le=300_000, alias="CONSENTINEL_UNKNOWN_PHOTO_GRACE_MS"
    )
    """How long (wall clock) the gate waits before it decides ``UNKNOWN_PHOTO`` for a photo the
    index knows no upload of, unless an upload later than the request reaches its partition
    first: an upload appended after the request it precedes still decides it. The wait does not
    end while the partition's input topics have records the gate has not been given yet."""
    commit_interval_ms: int = Field(0, ge=0, alias="CONSENTINEL_COMMIT_INTERVAL_MS")
    """Commit cadence by time as well as size (``RuntimeOptions.commit_interval_ms``): 0 commits
    every loop turn that has work (lowest latency); a larger value fills bigger transactions."""
    caught_up_grace_ms: int = Field(
        RuntimeOptions.caught_up_grace_ms, ge=0, le=10_000, alias="CONSENTINEL_CAUGHT_UP_GRACE_MS"
    )
    """How long a record waits before it overtakes an input stream of its partition that is at
    its end only as of the last fetch (``RuntimeOptions.caught_up_grace_ms``): the order kept for
    events of one user written to different topics within about this time of each other, paid
    as latency by every live decision whose other streams are idle. 0: no wait."""
    topic_prefix: str = Field("", alias="CONSENTINEL_TOPIC_PREFIX", pattern=r"^[A-Za-z0-9._-]*$")
    stack_home: Path = Field(
        Path.home() / ".cache" / "consentinel" / "stack", alias="CONSENTINEL_STACK_HOME"
    )
    schema_registry_username: str | None = Field(None, alias="SCHEMA_REGISTRY_USERNAME")
    schema_registry_password: SecretStr | None = Field(None, alias="SCHEMA_REGISTRY_PASSWORD")
    signing_key_path: Path | None = Field(None, alias="CONSENTINEL_SIGNING_KEY")
    """The gate's Ed25519 private key file (PEM) it signs chain heads with; never logged."""
    verify_key_path: Path | None = Field(None, alias="CONSENTINEL_VERIFY_KEY")
    """The matching public key file `audit verify` checks checkpoint signatures with."""

    @field_validator("signing_key_path", "verify_key_path", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """Read an empty ``CONSENTINEL_SIGNING_KEY`` or ``CONSENTINEL_VERIFY_KEY`` as not set."""
        return None if isinstance(value, str) and not value.strip() else value

    def registry_basic_auth(self) -> tuple[str, SecretStr] | None:
        """Return the schema registry's basic-auth ``(user, password)``, or ``None`` if unset."""
        if not self.schema_registry_username:
            return None
        return self.schema_registry_username, self.schema_registry_password or SecretStr("")

    def kafka_config(self) -> dict[str, Any]:
        """Return librdkafka client settings shared by every producer, consumer and admin."""
        config: dict[str, Any] = {
            "bootstrap.servers": self.kafka_bootstrap_servers,
            "security.protocol": self.kafka_security_protocol,
        }
        if self.kafka_sasl_mechanism:
            config["sasl.mechanism"] = self.kafka_sasl_mechanism
        if self.kafka_sasl_username is not None:
            config["sasl.username"] = self.kafka_sasl_username
        if self.kafka_sasl_password is not None:
            config["sasl.password"] = self.kafka_sasl_password.get_secret_value()
        if self.kafka_ssl_ca_location:
            config["ssl.ca.location"] = self.kafka_ssl_ca_location
        if self.kafka_ssl_certificate_location:
            config["ssl.certificate.location"] = self.kafka_ssl_certificate_location
        if self.kafka_ssl_key_location:
            config["ssl.key.location"] = self.kafka_ssl_key_location
        if self.kafka_ssl_key_password is not None:
            config["ssl.key.password"] = self.kafka_ssl_key_password.get_secret_value()
        return config

    def secret_values(self) -> list[str]:
        """Return the values of every secret setting that is set (to scrub them from output)."""
        held = (
            self.kafka_sasl_password,
            self.kafka_ssl_key_password,
            self.schema_registry_password,
        )
        return [s.get_secret_value() for s in held if s is not None and s.get_secret_value()]


def display_url(url: str) -> str:
    """Return ``url`` fit for a message: scheme, host, port and path only.

    User info, query string and fragment are dropped (they may hold a secret); an unparsable URL
    is shown as ``the URL``.
    """
    try:
        parts = urlsplit(url)
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))
    except ValueError:
        return "the URL"


def refuse_url_credentials(url: str, name: str = "SCHEMA_REGISTRY_URL") -> None:
    """Raise :class:`ConfigError` if ``url`` may carry credentials, never echoing them.

    Refused: ``user:password@`` before the host, and any query string or fragment (``?token=...``;
    a registry's base URL needs neither). Credentials in a URL end up in logs, process listings
    and error messages; the registry's come from ``SCHEMA_REGISTRY_USERNAME`` /
    ``SCHEMA_REGISTRY_PASSWORD`` only (contract section 6). The message shows
    :func:`display_url` only. A comma-separated list of URLs is checked URL by URL.
    """
    for one in url.split(","):
        _refuse_one(one.strip(), name)


def _refuse_one(url: str, name: str) -> None:
    shown = display_url(url)
    try:
        parts = urlsplit(url)
        has_userinfo = "@" in parts.netloc
        has_query = bool(parts.query) or "?" in url
        has_fragment = bool(parts.fragment) or "#" in url
    except ValueError:
        has_userinfo, has_query, has_fragment = "@" in url, "?" in url, "#" in url
    hint = (
        "remove them from the URL and set SCHEMA_REGISTRY_USERNAME and SCHEMA_REGISTRY_PASSWORD"
        " instead"
    )
    if has_userinfo:
        raise ConfigError(
            f"{name} must not contain credentials ({shown} has a user or password before '@')",
            hint=hint,
        )
    if has_query or has_fragment:
        part = "a query string ('?...')" if has_query else "a fragment ('#...')"
        raise ConfigError(
            f"{name} must not contain credentials ({shown} has {part}, which may hold a token;"
            " it is not shown)",
            hint=hint,
        )


def load_settings(**overrides: Any) -> Settings:
    """Read and validate the settings, turning validation failures into :class:`ConfigError`.

    A ``SCHEMA_REGISTRY_URL`` that may carry credentials (user info, query string) is refused
    (:func:`refuse_url_credentials`); so is a ``KAFKA_SSL_KEY_LOCATION`` file readable by group or
    others (:func:`streams.secretfile.refuse_shared_secret_file`).
    Messages never contain a secret's value: only the names and pydantic's description of what is
    wrong, and the original validation error (which holds the input) is not chained.
    """
    try:
        loaded = Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(
            f"invalid settings: {problems}", hint="fix the environment variables named above"
        ) from None
    refuse_url_credentials(loaded.schema_registry_url)
    if loaded.kafka_ssl_key_location and Path(loaded.kafka_ssl_key_location).exists():
        refuse_shared_secret_file(
            Path(loaded.kafka_ssl_key_location), "KAFKA_SSL_KEY_LOCATION", "a private key"
        )
    return loaded


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Return the process-wide settings, read on first use."""
    return load_settings()


def runtime_options(settings: Settings, options: RuntimeOptions | None = None) -> RuntimeOptions:
    """Return ``options`` (default: the defaults) with what the environment sets of them.

    The store, its directory (one per instance), the commit cadence and the merge's grace: every
    processor (the gate and the detectors) takes them the same way.
    """
    options = options or RuntimeOptions()
    options.state_store = settings.state_store
    options.commit_interval_ms = settings.commit_interval_ms
    options.caught_up_grace_ms = settings.caught_up_grace_ms
    options.state_dir = settings.state_dir / settings.instance_id
    return options
