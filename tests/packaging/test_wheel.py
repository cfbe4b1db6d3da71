"""The wheel as a producer team gets it: built, installed lean in a clean virtualenv, used.

Builds the wheel from a copy of the checkout, installs it *without extras* into a fresh virtualenv
outside the checkout, and from a directory that is not the checkout runs ``consentinel --version``,
``topics apply`` and ``schemas register`` (under a unique ``CONSENTINEL_TOPIC_PREFIX``) and the
README's SDK example against the real broker and registry. The topics are deleted afterwards.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.settings import Settings

pytestmark = [pytest.mark.packaging, pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("streams", "schemas", "deploy", "pyproject.toml", "README.md")


def readme_sdk_example() -> str:
    """Return the first ``python`` block after the README heading that names the producer SDK."""
    text = (REPO / "README.md").read_text()
    heading = re.search(r"^#+ .*Producer SDK.*$", text, flags=re.MULTILINE)
    assert heading, "README.md has no 'Producer SDK' heading"
    block = re.search(r"```python\n(.*?)```", text[heading.end() :], flags=re.DOTALL)
    assert block, "README.md's Producer SDK section has no python example"
    return block.group(1)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(
                origin,
                src / name,
                symlinks=True,
                ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "build"),
            )
        else:
            shutil.copy2(origin, src / name)
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(src)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    (built,) = out.glob("consentinel-*.whl")
    return built


@pytest.fixture(scope="module")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True, timeout=120)
    subprocess.run(
        [str(root / "bin" / "pip"), "install", "-q", str(wheel)],
        check=True,
        capture_output=True,
        timeout=900,
    )
    return root


@pytest.fixture
def prefix(settings: Settings) -> Iterator[str]:
    name = f"wheel-{uuid.uuid4().hex[:8]}."
    yield name
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(settings.kafka_config())
    ours = [t for t in admin.list_topics(timeout=30).topics if t.startswith(name)]
    if ours:
        for future in admin.delete_topics(ours, operation_timeout=30).values():
            future.result()


def test_wheel_ships_schemas_topics_and_policy(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "streams/_data/topics.yaml" in names
    assert "streams/_data/policy.example.yaml" in names
    assert "streams/_data/acls.yaml" in names
    shipped = {n.rsplit("/", 1)[1] for n in names if n.startswith("streams/_data/schemas/")}
    assert shipped == {p.name for p in (REPO / "schemas").glob("*.avsc")}


def test_installed_wheel_works_against_the_stack(
    venv: Path, settings: Settings, prefix: str, tmp_path: Path
) -> None:
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
        "SCHEMA_REGISTRY_URL": settings.schema_registry_url,
        "CONSENTINEL_TOPIC_PREFIX": prefix,
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(args), env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180
        )

    exe = str(venv / "bin" / "consentinel")
    python = str(venv / "bin" / "python")
    version = run(exe, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == "consentinel 0.1.0"

    # the lean install is lean: a producer team does not get the service's dependencies
    lean = run(python, "-c", "import importlib.util as u; print(u.find_spec('polars'))")
    assert lean.stdout.strip() == "None"
    located = run(python, "-c", "import streams.resources as r; print(r.schemas_path())")
    assert str(venv) in located.stdout and str(REPO) not in located.stdout

    topics = run(exe, "topics", "apply")
    assert topics.returncode == 0, topics.stderr
    assert f"{prefix}governance.decisions" in topics.stdout
    registered = run(exe, "schemas", "register")
    assert registered.returncode == 0, registered.stderr
    assert f"{prefix}consent.changes-value" in registered.stdout

    example = tmp_path / "sdk_example.py"
    example.write_text(readme_sdk_example())
    sdk = run(python, str(example))
    assert sdk.returncode == 0, sdk.stdout + sdk.stderr
