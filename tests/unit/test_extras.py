"""pyproject.toml's extras: polars only in [reports]; [dev] installs everything the tests import."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from streams.cli import EXTRAS

REPO = Path(__file__).resolve().parents[2]


def extras() -> dict[str, list[str]]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return dict(project["optional-dependencies"])


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[<>=!~\[ ;]", r, maxsplit=1)[0].lower() for r in requirements}


def test_polars_is_in_reports_not_in_service() -> None:
    declared = extras()
    assert "polars" not in names(declared["service"])
    assert "polars" in names(declared["reports"])


def test_dev_installs_the_service_and_the_reports() -> None:
    (own,) = [r for r in extras()["dev"] if r.startswith("consentinel[")]
    included = set(own.removeprefix("consentinel[").removesuffix("]").split(","))
    assert {"service", "reports", "bench", "stack"} <= included


def test_the_cli_names_the_extra_that_brings_each_optional_module() -> None:
    declared = extras()
    for module, extra in EXTRAS.items():
        distribution = {"faust": "faust-streaming", "rocksdict": "rocksdict"}.get(module, module)
        distribution = distribution.replace("_", "-")
        assert distribution in names(declared[extra]), f"{module}: not in [{extra}]"
