"""Files shipped inside the package: the Avro schemas, the topic layout and the example policy.

The repository keeps ``schemas/`` and ``deploy/`` at its top level as the single source of truth.
``streams/_data/`` holds *symbolic links* to them (``schemas -> ../../schemas``,
``topics.yaml -> ../../deploy/topics.yaml``, ``policy.example.yaml -> ../../deploy/...``), listed
as package data in ``pyproject.toml``; building the wheel copies the files the links point to, so
an installed ``consentinel`` reads real files through :mod:`importlib.resources` and nothing is
committed twice. In a checkout (editable install) the same paths resolve through the links.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]


def packaged(name: str) -> Path:
    """Return the path of ``streams/_data/<name>`` (a file or directory shipped in the wheel)."""
    return Path(str(files("streams").joinpath("_data", name)))


def _first_existing(name: str, repo_relative: str) -> Path:
    candidate = packaged(name)
    if candidate.exists():
        return candidate
    return _REPO / repo_relative  # a checkout whose links were not materialised (e.g. Windows)


def schemas_path() -> Path:
    """Return the directory of the ``.avsc`` files shipped with the package."""
    return _first_existing("schemas", "schemas")


def topics_file() -> Path:
    """Return the topic layout (``deploy/topics.yaml``) shipped with the package."""
    return _first_existing("topics.yaml", "deploy/topics.yaml")


def example_policy() -> Path:
    """Return the example policy (``deploy/policy.example.yaml``) shipped with the package."""
    return _first_existing("policy.example.yaml", "deploy/policy.example.yaml")


def acls_file() -> Path:
    """Return the principals and ACLs (``deploy/acls.yaml``) shipped with the package."""
    return _first_existing("acls.yaml", "deploy/acls.yaml")
