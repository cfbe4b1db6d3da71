"""Registry basic auth comes from SCHEMA_REGISTRY_USERNAME/PASSWORD, never from the URL or a log."""

from __future__ import annotations

import base64
import logging
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from pydantic import SecretStr

from streams import cli
from streams.errors import ConfigError, RegistryError
from streams.serde.registry import RegistrySchemaSource, make_client, register_all
from streams.settings import load_settings, settings

PASSWORD = "pw-Zq7-never-shown"
USER = "registry-bot"


class _Recorder(BaseHTTPRequestHandler):
    seen: list[str | None] = []
    status = 401

    def do_GET(self) -> None:
        type(self).seen.append(self.headers.get("Authorization"))
        body = b'{"error_code": 40101, "message": "Unauthorized"}'
        self.send_response(type(self).status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PUT = do_POST = do_GET

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def fake_registry() -> Iterator[tuple[str, type[_Recorder]]]:
    handler = type("Handler", (_Recorder,), {"seen": [], "status": 401})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/apis/ccompat/v7", handler
    finally:
        server.shutdown()
        server.server_close()


def expected_header() -> str:
    return "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


@pytest.mark.parametrize(
    "url",
    [
        f"http://{USER}:{PASSWORD}@localhost:8081/apis/ccompat/v7",
        f"https://{USER}:{PASSWORD}@registry.example:443",
        f"http://localhost:1,http://{USER}:{PASSWORD}@other:2",
        f"http://{PASSWORD}@localhost:8081",
    ],
)
def test_url_with_credentials_is_refused_without_echoing_them(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_client(url, credentials=None)
    message = str(caught.value)
    assert "SCHEMA_REGISTRY_URL must not contain credentials" in message
    assert "SCHEMA_REGISTRY_USERNAME" in message and "SCHEMA_REGISTRY_PASSWORD" in message
    assert PASSWORD not in message


def test_settings_refuse_a_url_with_credentials() -> None:
    url = f"http://{USER}:{PASSWORD}@localhost:8081/apis/ccompat/v7"
    with pytest.raises(ConfigError) as caught:
        load_settings(SCHEMA_REGISTRY_URL=url)
    assert PASSWORD not in str(caught.value) and "localhost:8081" in str(caught.value)


def test_password_is_a_secret_in_settings() -> None:
    loaded = load_settings(SCHEMA_REGISTRY_USERNAME=USER, SCHEMA_REGISTRY_PASSWORD=PASSWORD)
    assert PASSWORD not in repr(loaded) and PASSWORD not in str(loaded)
    auth = loaded.registry_basic_auth()
    assert auth is not None and auth[0] == USER
    assert isinstance(auth[1], SecretStr) and auth[1].get_secret_value() == PASSWORD


def test_username_with_colon_is_refused() -> None:
    with pytest.raises(ConfigError, match="must not contain ':'"):
        make_client("http://localhost:1", credentials=("a:b", SecretStr(PASSWORD)))


def test_client_sends_basic_auth_and_no_message_or_log_holds_the_password(
    fake_registry: tuple[str, type[_Recorder]], caplog: pytest.LogCaptureFixture
) -> None:
    url, handler = fake_registry
    caplog.set_level(logging.DEBUG)
    source = RegistrySchemaSource(url, credentials=(USER, SecretStr(PASSWORD)))
    with pytest.raises(RegistryError) as refused:
        source.schema_for_id(1)
    assert handler.seen and handler.seen[-1] == expected_header()
    handler.status = 500
    with pytest.raises(RegistryError) as failed:
        register_all(url, topics=["consent.changes"], credentials=(USER, SecretStr(PASSWORD)))
    assert handler.seen[-1] == expected_header()
    for error in (refused.value, failed.value):
        assert PASSWORD not in str(error) and PASSWORD not in repr(error)
    assert PASSWORD not in caplog.text


def test_unreachable_registry_error_does_not_hold_the_password(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    source = RegistrySchemaSource("http://127.0.0.1:9/x", credentials=(USER, SecretStr(PASSWORD)))
    with pytest.raises(RegistryError) as caught:
        source.schema_for_id(1)
    assert PASSWORD not in str(caught.value) and PASSWORD not in caplog.text


def test_default_credentials_come_from_the_settings(
    fake_registry: tuple[str, type[_Recorder]], monkeypatch: pytest.MonkeyPatch
) -> None:
    url, handler = fake_registry
    monkeypatch.setenv("SCHEMA_REGISTRY_USERNAME", USER)
    monkeypatch.setenv("SCHEMA_REGISTRY_PASSWORD", PASSWORD)
    settings.cache_clear()
    try:
        with pytest.raises(RegistryError):
            RegistrySchemaSource(url).schema_for_id(1)  # as the gate, detectors, SDK build it
    finally:
        settings.cache_clear()
    assert handler.seen[-1] == expected_header()


def test_cli_refuses_url_credentials_with_exit_2_and_no_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", f"http://{USER}:{PASSWORD}@localhost:8081/x")
    assert cli.main(["schemas", "register"]) == 2
    captured = capsys.readouterr()
    assert "must not contain credentials" in captured.err
    assert PASSWORD not in captured.err and PASSWORD not in captured.out
