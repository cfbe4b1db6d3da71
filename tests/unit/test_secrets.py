"""Secrets (contract section 6): no credentials in the registry URL; no shared secret files.

A ``SCHEMA_REGISTRY_URL`` with user info or a query string (``?token=...``) is refused by the
settings, by ``make_client`` and by the command line, and no message echoes the secret; a private
key or password file readable by group or others is refused, as ssh refuses such keys.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from streams import cli
from streams.errors import ConfigError
from streams.secretfile import refuse_shared_secret_file
from streams.serde.registry import make_client
from streams.settings import display_url, load_settings

TOKEN = "tok-9Xq2-never-shown"
QUERY_URLS = [
    f"http://localhost:8081/apis/ccompat/v7?token={TOKEN}",
    f"https://registry.example/apis/ccompat/v7?api_key={TOKEN}&x=1",
    f"http://localhost:1,http://other:2/apis?access_token={TOKEN}",
    f"http://localhost:8081/apis/ccompat/v7#{TOKEN}",
    f"http://localhost:8081/apis/ccompat/v7?{TOKEN}",
]


@pytest.mark.parametrize("url", QUERY_URLS)
def test_settings_refuse_a_token_in_the_url_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(SCHEMA_REGISTRY_URL=url)
    message = str(caught.value)
    assert "SCHEMA_REGISTRY_URL must not contain credentials" in message
    assert TOKEN not in message and "token=" not in message
    assert "SCHEMA_REGISTRY_PASSWORD" in message


@pytest.mark.parametrize("url", QUERY_URLS)
def test_make_client_refuses_a_token_in_the_url_without_echoing_it(url: str) -> None:
    with pytest.raises(ConfigError) as caught:
        make_client(url, credentials=None)
    assert TOKEN not in str(caught.value)


def test_cli_refuses_a_token_in_the_url_with_exit_2_and_never_prints_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SCHEMA_REGISTRY_URL", QUERY_URLS[0])
    assert cli.main(["schemas", "register"]) == 2
    captured = capsys.readouterr()
    assert "must not contain credentials" in captured.err
    assert TOKEN not in captured.err and TOKEN not in captured.out


def test_a_plain_registry_url_is_accepted_and_shown_without_secrets() -> None:
    url = "http://localhost:8081/apis/ccompat/v7"
    assert load_settings(SCHEMA_REGISTRY_URL=url).schema_registry_url == url
    assert display_url(f"http://u:p@h:1/a?token={TOKEN}#f") == "http://h:1/a"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_kafka_ssl_key_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\nnot-shown\n-----END PRIVATE KEY-----\n")
    os.chmod(key, mode)
    with pytest.raises(ConfigError, match="KAFKA_SSL_KEY_LOCATION") as caught:
        load_settings(KAFKA_SSL_KEY_LOCATION=str(key))
    assert "not-shown" not in str(caught.value) and "chmod 600" in str(caught.value)
    os.chmod(key, 0o600)
    assert load_settings(KAFKA_SSL_KEY_LOCATION=str(key)).kafka_ssl_key_location == str(key)


def test_a_missing_secret_file_is_left_to_its_reader(tmp_path: Path) -> None:
    refuse_shared_secret_file(tmp_path / "absent", "X", "a secret")  # no error: nothing to judge


def test_a_secret_file_behind_a_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    target = tmp_path / "real.key"
    target.write_text("secret")
    os.chmod(target, 0o644)
    link = tmp_path / "link.key"
    link.symlink_to(target)  # as in a Kubernetes secret volume
    with pytest.raises(ConfigError, match="mode 644"):
        refuse_shared_secret_file(link, "X", "a secret")
