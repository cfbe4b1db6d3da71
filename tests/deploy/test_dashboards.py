"""Dashboards as code: grafana/dashboards/*.json are what grafana/generate.py writes.

The generator builds them with Grafana's own Python SDK (PyPI ``grafana-foundation-sdk``). These
tests fail when a committed JSON file differs from the generator's output (edit the generator and
run it, never the JSON), and when a query names a data source uid instead of the ``datasource``
variable.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.deploy

REPO = Path(__file__).resolve().parents[2]
DASHBOARDS = REPO / "grafana" / "dashboards"


def generator() -> Any:
    spec = importlib.util.spec_from_file_location("grafana_generate", REPO / "grafana/generate.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def datasources(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        if isinstance(node.get("datasource"), dict):
            yield node["datasource"]
        for value in node.values():
            yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def test_committed_json_is_generated() -> None:
    rendered = generator().render()
    assert set(rendered) == {p.name for p in DASHBOARDS.glob("*.json")}
    for name, text in rendered.items():
        committed = (DASHBOARDS / name).read_text()
        assert committed == text, f"{name} differs: run .venv/bin/python grafana/generate.py"


def test_drift_is_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gen = generator()
    for name, text in gen.render().items():
        (tmp_path / name).write_text(text.replace("Bulk export", "Bulk exports"))
    monkeypatch.setattr(gen, "OUT", tmp_path)
    assert gen.main(["--check"]) == 1


def test_queries_use_the_datasource_variable() -> None:
    for path in DASHBOARDS.glob("*.json"):
        doc = json.loads(path.read_text())
        variables = {v["name"]: v for v in doc["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        refs = list(datasources(doc))
        assert refs, path.name
        for ref in refs:
            assert ref == {"type": "prometheus", "uid": "${datasource}"}, (path.name, ref)
        assert "consentinel-prometheus" not in path.read_text()
