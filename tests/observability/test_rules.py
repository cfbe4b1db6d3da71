"""Prometheus rules, Grafana dashboards and Grafana alerting, checked without a running server.

- ``promtool check config``, ``promtool check rules`` and ``promtool test rules`` must pass
  (marker ``prometheus``; promtool missing is a failure, CI installs Debian's ``prometheus``).
- Every PromQL expression of the dashboards and the Grafana alert rules parses (promtool checks
  them as recording rules) and uses only metrics that the gate or the detector export, recording
  rules of deploy/prometheus/rules, or Prometheus built-ins.
- Every alert has a severity, a summary, a description, a runbook link with a runbook section,
  a firing and a silent promtool test case, and a Grafana-managed mirror.
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
PROM_CONFIG = PROM_DIR / "prometheus.yml"
RULES_FILE = PROM_DIR / "rules" / "consentinel.yml"
RULE_TESTS = PROM_DIR / "tests" / "consentinel_test.yml"
GRAFANA = REPO / "grafana"
DASHBOARDS = {
    "Consent enforcement": GRAFANA / "dashboards" / "consent-enforcement.json",
    "Bulk export": GRAFANA / "dashboards" / "bulk-export.json",
}
GRAFANA_DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDER = GRAFANA / "provisioning" / "dashboards" / "consentinel.yml"
GRAFANA_ALERTING = GRAFANA / "provisioning" / "alerting"
README = REPO / "README.md"
DATASOURCE_UID = "consentinel-prometheus"
DASHBOARD_DATASOURCE = "${datasource}"
"""Dashboards query the `datasource` variable (grafana/generate.py), never a fixed uid."""

#: Modules whose prometheus_client metrics the processes export. A missing one fails the tests.
METRIC_MODULES = ("streams.gate.metrics", "streams.detect.metrics")
#: Series Prometheus itself makes.
BUILTIN_SERIES = frozenset({"up", "ALERTS", "ALERTS_FOR_STATE"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
    "enum": ("",),
    "unknown": ("",),
}


# --------------------------------------------------------------------------- helpers


def promtool() -> str:
    path = shutil.which("promtool")
    assert path is not None, (
        "promtool is not installed: `apt-get install prometheus` (Debian's; .ci/run does)"
    )
    return path


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def exported_series(module: ModuleType) -> set[str]:
    """Every series name the metrics defined in ``module`` can expose."""
    families: list[Any] = []
    for value in vars(module).values():
        if isinstance(value, MetricWrapperBase):
            families.extend(value.describe())
        elif isinstance(value, CollectorRegistry) and value is not REGISTRY:
            families.extend(value.collect())
    names: set[str] = set()
    for family in families:
        for suffix in _SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def all_exported_series() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for name in METRIC_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            pytest.fail(f"{name} is missing ({exc}); the dashboards and alerts depend on it")
        series = exported_series(module)
        assert series, f"{name} defines no prometheus_client metric"
        found[name] = series
    return found


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as handle:
        return yaml.safe_load(handle)


def prometheus_rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES_FILE)["groups"] for rule in group["rules"]]


def prometheus_alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in prometheus_rules() if "alert" in rule}


def recording_rules() -> set[str]:
    return {rule["record"] for rule in prometheus_rules() if "record" in rule}


def grafana_alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for path in sorted(GRAFANA_ALERTING.glob("*.y*ml")):
        for group in load_yaml(path).get("groups", []) or []:
            rules.extend(group["rules"])
    return rules


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))  # collapsed rows


def dashboard_exprs(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """``(where, expr)`` for every PromQL query of a dashboard: panels, annotations, variables."""
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for annotation in dashboard.get("annotations", {}).get("list", []):
        expr = annotation.get("expr") or (annotation.get("target") or {}).get("expr")
        if expr:
            yield f"annotation {annotation['name']!r}", expr
    for variable in dashboard.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query.get("query", "") if isinstance(query, dict) else str(query or "")
        match = re.fullmatch(r"\s*label_values\(\s*(?:(.*),)?\s*\w+\s*\)\s*", text, re.S)
        if match:
            if match.group(1):
                yield f"variable {variable['name']!r}", match.group(1)
        elif re.fullmatch(r"\s*query_result\((.*)\)\s*", text, re.S):
            yield f"variable {variable['name']!r}", text.strip()[len("query_result(") : -1]
        elif text:
            yield f"variable {variable['name']!r}", text


def grafana_rule_exprs() -> Iterator[tuple[str, str]]:
    for rule in grafana_alert_rules():
        for query in rule["data"]:
            if query["datasourceUid"] != "__expr__":
                yield f"grafana rule {rule['title']!r} {query['refId']}", query["model"]["expr"]


def all_grafana_exprs() -> list[tuple[str, str]]:
    exprs: list[tuple[str, str]] = []
    for title, path in DASHBOARDS.items():
        exprs.extend(
            (f"{title}: {where}", expr) for where, expr in dashboard_exprs(load_json(path))
        )
    exprs.extend(grafana_rule_exprs())
    return exprs


def load_json(path: Path) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data: dict[str, Any] = json.load(handle)
    return data


def substitute_grafana_variables(expr: str) -> str:
    """Replace Grafana's variables by values Prometheus accepts (all recipients, 1 m windows)."""
    expr = re.sub(r"\$__rate_interval|\$\{__rate_interval\}", "1m", expr)
    expr = re.sub(r"\$__interval|\$\{__interval\}", "5s", expr)
    expr = re.sub(r"\$__range|\$\{__range\}", "1h", expr)
    return re.sub(r"\$\{\w+(?::\w+)?\}|\$\w+", ".+", expr)


_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORDS = re.compile(r"(?<![\w:.])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool", "and", "or"}
    | {"unless", "atan2", "inf", "nan", "start", "end"}
)


def metric_names(expr: str) -> set[str]:
    """Metric names a PromQL expression selects (not functions, labels or keywords)."""
    text = _STRINGS.sub('""', expr)
    text = re.sub(r"\$\{[^}]*\}|\$\w+", " ", text)  # Grafana variables
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges and subqueries
    text = _GROUPING.sub(" ", text)
    names = set()
    for match in _WORDS.finditer(text):
        name, call = match.group(1), match.group(2)
        if call is None and name.lower() not in _KEYWORDS:
            names.add(name)
    return names


DOCS = REPO / "docs"
RUNBOOK_URL = '{{ or $externalLabels.runbook_base_url "docs/runbook.md" }}#'


def docs_text() -> str:
    """The metric catalog (docs/metrics.md) and the runbook (docs/runbook.md)."""
    return "\n".join(
        (DOCS / name).read_text(encoding="utf-8") for name in ("metrics.md", "runbook.md")
    )


def rule_test_cases() -> list[dict[str, Any]]:
    return [case for test in load_yaml(RULE_TESTS)["tests"] for case in test["alert_rule_test"]]


# --------------------------------------------------------------------------- promtool


@pytest.mark.prometheus
def test_promtool_is_installed() -> None:
    result = run_promtool("--version")
    assert result.returncode == 0, result.stderr


@pytest.mark.prometheus
def test_promtool_check_config() -> None:
    result = run_promtool("check", "config", str(PROM_CONFIG))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    result = run_promtool("check", "rules", *map(str, sorted((PROM_DIR / "rules").glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.prometheus
def test_promtool_test_rules() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout + result.stderr


@pytest.mark.prometheus
def test_grafana_queries_are_valid_promql(tmp_path: Path) -> None:
    """Every dashboard and Grafana alert query parses, checked by promtool as recording rules."""
    exprs = all_grafana_exprs()
    assert exprs
    rules = [
        {"record": f"grafana_query:{i}", "expr": substitute_grafana_variables(expr)}
        for i, (_, expr) in enumerate(exprs)
    ]
    path = tmp_path / "grafana_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "grafana", "rules": rules}]}))
    result = run_promtool("check", "rules", str(path))
    detail = "\n".join(
        f"grafana_query:{i}  {where}: {expr}" for i, (where, expr) in enumerate(exprs)
    )
    assert result.returncode == 0, result.stdout + result.stderr + "\n" + detail


# --------------------------------------------------------------------------- metric names


def test_metric_name_extraction() -> None:
    assert metric_names(
        'sum by (job, le) (rate(a_bucket{x="y"}[5m])) / on (job) group_left(le) b'
    ) == {"a_bucket", "b"}
    assert metric_names(
        "histogram_quantile(0.99, sum by (le) (rate(c[5m] offset 10m))) > 1e-9"
    ) == {"c"}
    assert metric_names('x unless x offset 10m or vector(0) and on () sum(y{r=~"$recipient"})') == {
        "x",
        "y",
    }
    assert metric_names('ALERTS{alertname="Foo", alertstate="firing"}') == {"ALERTS"}
    assert metric_names("topk(10, recipient:consentinel_gate_photos_out:rate1m) * 3600") == {
        "recipient:consentinel_gate_photos_out:rate1m"
    }


def test_every_metric_module_exports_metrics() -> None:
    series = all_exported_series()
    assert "consentinel_gate_decisions_total" in series["streams.gate.metrics"]
    assert "consentinel_detector_alerts_total" in series["streams.detect.metrics"]


def test_grafana_queries_use_only_exported_metrics() -> None:
    known = set().union(*all_exported_series().values()) | recording_rules() | BUILTIN_SERIES
    unknown = {
        f"{where}: {name}"
        for where, expr in all_grafana_exprs()
        for name in metric_names(expr)
        if name not in known
    }
    assert not unknown, "queries use metrics no process exports:\n" + "\n".join(sorted(unknown))


def test_prometheus_rules_use_only_exported_metrics() -> None:
    exported = set().union(*all_exported_series().values())
    records = recording_rules()
    unknown = set()
    for rule in prometheus_rules():
        name = rule.get("alert") or rule.get("record")
        for metric in metric_names(rule["expr"]):
            if metric not in exported | BUILTIN_SERIES and metric not in records - {name}:
                unknown.add(f"{name}: {metric}")
    assert not unknown, "rules use metrics no process exports:\n" + "\n".join(sorted(unknown))


def test_metric_catalog_lists_every_metric() -> None:
    catalog = docs_text()
    missing = set()
    for module in METRIC_MODULES:
        for value in vars(importlib.import_module(module)).values():
            if isinstance(value, MetricWrapperBase):
                family = next(iter(value.describe()))
                shown = family.name + ("_total" if family.type == "counter" else "")
                if f"`{shown}`" not in catalog:
                    missing.add(shown)
    assert not missing, f"the metric catalog in docs/metrics.md lacks: {sorted(missing)}"


# --------------------------------------------------------------------------- alert hygiene


def test_every_alert_is_documented_and_actionable() -> None:
    runbook = docs_text()
    alerts = prometheus_alerts()
    assert len(alerts) >= 7
    for name, rule in alerts.items():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert len(annotations["description"].split()) >= 15, f"{name}: say what to do"
        anchor = f"runbook-{name.lower()}"
        assert annotations["runbook_url"] == f"{RUNBOOK_URL}{anchor}", name
        assert re.search(rf"^#{{2,3}} {re.escape(anchor)}\s*$", runbook, re.M), (
            f"docs/runbook.md has no runbook section '## {anchor}'"
        )


def test_required_alerts_exist() -> None:
    alerts = prometheus_alerts()
    exprs = " ".join(rule["expr"] for rule in alerts.values())
    for metric in (
        "consentinel_detector_episode_active",  # bulk export in progress
        "consentinel_gate_suspended_recipients",  # recipient suspended
        'up{job="consentinel-gate"}',  # gate down
        "consentinel_gate_ready",  # gate not ready
        "consentinel_gate_decision_latency_seconds_bucket",  # latency p99
        "consentinel_gate_dead_letters_total",  # dead letters
        "consentinel_gate_consumer_lag_messages",  # consumer lag
        "consentinel_gate_retroactive_violations_total",  # retroactive violations
    ):
        assert metric in exprs, f"no alert uses {metric}"


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    cases = rule_test_cases()
    for name in prometheus_alerts():
        mine = [case for case in cases if case["alertname"] == name]
        assert any(case.get("exp_alerts") for case in mine), f"{name}: no case where it fires"
        assert any(not case.get("exp_alerts") for case in mine), f"{name}: no silent case"


def test_scrape_config_targets_gate_and_detector() -> None:
    config = load_yaml(PROM_CONFIG)
    assert config["global"]["scrape_interval"] == "5s"
    assert config["global"]["evaluation_interval"] == "5s"
    assert config["rule_files"] == ["rules/*.yml"]
    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["consentinel-gate"] == ["localhost:9464"]
    assert targets["consentinel-detector"] == ["localhost:9465"]


# --------------------------------------------------------------------------- Grafana


def test_grafana_datasource_and_dashboard_provider() -> None:
    (datasource,) = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    assert datasource["uid"] == DATASOURCE_UID
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://localhost:9090"
    (provider,) = load_yaml(GRAFANA_DASHBOARD_PROVIDER)["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"


def test_compose_grafana_reaches_the_datasource() -> None:
    """In compose every service is on one bridge network: Grafana's datasource (mounted from
    deploy/compose/grafana-datasource.yml) is the `prometheus` service, with the same uid as the
    local one, and the dashboards come from grafana/."""
    compose_dir = REPO / "deploy" / "compose"
    (local,) = load_yaml(GRAFANA_DATASOURCES)["datasources"]
    (datasource,) = load_yaml(compose_dir / "grafana-datasource.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["uid"] == local["uid"] == DATASOURCE_UID
    services = load_yaml(compose_dir / "docker-compose.yml")["services"]
    mounts = services["grafana"]["volumes"]
    assert "./grafana-datasource.yml:/etc/grafana/provisioning/datasources/prometheus.yml:ro" in (
        mounts
    )
    assert "../../grafana/dashboards:/var/lib/grafana/dashboards:ro" in mounts


@pytest.mark.parametrize("title", sorted(DASHBOARDS))
def test_dashboard_structure(title: str) -> None:
    dashboard = load_json(DASHBOARDS[title])
    assert dashboard["title"] == title
    assert dashboard["schemaVersion"] >= 39
    assert dashboard["uid"]
    panels = list(_panels(dashboard["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == DASHBOARD_DATASOURCE, panel["title"]
        assert panel["targets"], f"{panel['title']}: no query"
        for target in panel["targets"]:
            assert target["expr"].strip(), f"{panel['title']}: empty expr"
            assert target.get("datasource", panel["datasource"])["uid"] == DASHBOARD_DATASOURCE


def test_consent_enforcement_dashboard_covers_the_brief() -> None:
    exprs = " ".join(
        expr for _, expr in dashboard_exprs(load_json(DASHBOARDS["Consent enforcement"]))
    )
    for needed in (
        "consentinel_gate_decisions",  # decisions by verdict, denials by reason, holds
        "consentinel_gate_photos_out",  # top recipients
        "consentinel_gate_suspended_recipients",  # suspensions
        "consentinel_gate_decision_latency_seconds",  # p50/p99
        "consentinel_gate_dead_letters_total",
        "consentinel_gate_consumer_lag_messages",
    ):
        assert needed in exprs, needed


def test_bulk_export_dashboard_covers_the_brief() -> None:
    dashboard = load_json(DASHBOARDS["Bulk export"])
    exprs = " ".join(expr for _, expr in dashboard_exprs(dashboard))
    for needed in (
        "consentinel_detector_recipient_photos_last_hour",
        "consentinel_detector_recipient_limit_photos_per_hour",
        "consentinel_detector_recipient_baseline_photos_per_hour",
    ):
        assert needed in exprs, needed
    annotations = [a.get("expr", "") for a in dashboard["annotations"]["list"]]
    assert any('alertname="ConsentinelBulkExportInProgress"' in a for a in annotations)


def test_grafana_provisions_no_alerting() -> None:
    """Prometheus rules are the one source of alerts; Grafana keeps the dashboards only.

    Grafana-managed copies of the rules would fire twice, and a provisioned notification policy
    would replace an organisation's whole policy tree.
    """
    assert not GRAFANA_ALERTING.exists() or not any(GRAFANA_ALERTING.iterdir())
    assert not grafana_alert_rules()
