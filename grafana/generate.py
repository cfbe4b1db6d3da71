"""Consentinel's Grafana dashboards as code (Grafana's own Python SDK, grafana-foundation-sdk).

    .venv/bin/python grafana/generate.py          # rewrite grafana/dashboards/*.json
    .venv/bin/python grafana/generate.py --check  # exit 1 when a committed file differs

The JSON files in grafana/dashboards/ are generated: edit this file, run it, commit both.
``tests/deploy/test_dashboards.py`` fails when the committed JSON differs from what this writes.
Every panel, annotation and variable reads from the ``datasource`` dashboard variable (a Prometheus
data source picked in the dashboard, by default the provisioned "Consentinel Prometheus"), never
from a hard-coded uid.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.builders import (
    bargauge,
    common,
    dashboard,
    prometheus,
    stat,
    table,
    timeseries,
)
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
DEFAULT_DATASOURCE = "Consentinel Prometheus"
"""The provisioned data source's name (grafana/provisioning/datasources/prometheus.yml)."""

Steps = Sequence[tuple[str, float | None]]
GREEN_RED_AT_1: Steps = (("green", None), ("red", 1))
RED_GREEN_AT_1: Steps = (("red", None), ("green", 1))
GREEN_ORANGE_AT_1: Steps = (("green", None), ("orange", 1))
LATENCY_5S: Steps = (("green", None), ("red", 5))


@dataclass(frozen=True)
class Q:
    """One PromQL query of a panel."""

    expr: str
    legend: str = "__auto"
    instant: bool = False
    table: bool = False


@dataclass(frozen=True)
class P:
    """One panel: kind, title, description, position (x, y, w, h) and queries, plus options."""

    kind: str  # stat | timeseries | bargauge | table
    title: str
    description: str
    pos: tuple[int, int, int, int]
    queries: Sequence[Q]
    unit: str | None = None
    min: float | None = None
    max: float | None = None
    steps: Steps | None = None
    colors: dict[str, str] = field(default_factory=dict)
    """timeseries: series name → fixed colour."""
    line_styles: dict[str, tuple[str, list[int]]] = field(default_factory=dict)
    line_width: int = 1
    fill: int = 10
    stacked: bool = False
    repeat: str | None = None
    stat_text: str = "auto"
    stat_color: str = "background"
    hide_columns: Sequence[str] = ()


def _target(query: Q, ref: str) -> prometheus.Dataquery:
    target = (
        prometheus.Dataquery()
        .ref_id(ref)
        .datasource(DATASOURCE)
        .expr(query.expr)
        .legend_format(query.legend)
    )
    if query.instant:
        return target.instant().format(cm_format("table" if query.table else "time_series"))
    return target.range()


def cm_format(name: str) -> Any:
    """Return the SDK's Prometheus query format enum for ``name``."""
    from grafana_foundation_sdk.models import prometheus as pm

    return pm.PromQueryFormat(name)


def _thresholds(steps: Steps) -> dashboard.ThresholdsConfig:
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=value, color=color) for color, value in steps])
    )


def _reduce_last() -> common.ReduceDataOptions:
    return common.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False)


def build_panel(spec: P, panel_id: int) -> Any:
    """Return the SDK builder of one panel."""
    x, y, w, h = spec.pos
    builder: Any
    if spec.kind == "stat":
        builder = (
            stat.Panel()
            .reduce_options(_reduce_last())
            .color_mode(cm.BigValueColorMode(spec.stat_color))
            .graph_mode(cm.BigValueGraphMode.NONE)
            .text_mode(cm.BigValueTextMode(spec.stat_text))
        )
    elif spec.kind == "bargauge":
        builder = (
            bargauge.Panel()
            .reduce_options(_reduce_last())
            .orientation(cm.VizOrientation.HORIZONTAL)
            .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
            .show_unfilled(True)
        )
    elif spec.kind == "table":
        builder = table.Panel().with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={"excludeByName": dict.fromkeys(spec.hide_columns, True)},
            )
        )
    else:
        builder = (
            timeseries.Panel()
            .line_width(spec.line_width)
            .fill_opacity(spec.fill)
            .show_points(cm.VisibilityMode.NEVER)
            .legend(
                common.VizLegendOptions()
                .display_mode(cm.LegendDisplayMode.TABLE)
                .placement(cm.LegendPlacement.BOTTOM)
                .show_legend(True)
                .calcs(["lastNotNull", "max"])
            )
            .tooltip(
                common.VizTooltipOptions()
                .mode(cm.TooltipDisplayMode.MULTI)
                .sort(cm.SortOrder.DESCENDING)
            )
        )
        if spec.stacked:
            builder = builder.stacking(
                common.StackingConfig().mode(cm.StackingMode.NORMAL).group("A")
            )
        for name in sorted(set(spec.colors) | set(spec.line_styles)):
            properties = []
            if name in spec.colors:
                properties.append(
                    dm.DynamicConfigValue(
                        id_val="color", value={"mode": "fixed", "fixedColor": spec.colors[name]}
                    )
                )
            if name in spec.line_styles:
                fill, dash = spec.line_styles[name]
                properties.append(
                    dm.DynamicConfigValue(
                        id_val="custom.lineStyle", value={"fill": fill, "dash": dash}
                    )
                )
            builder = builder.override_by_name(name, properties)
    builder = (
        builder.id(panel_id)
        .title(spec.title)
        .description(spec.description)
        .datasource(DATASOURCE)
        .grid_pos(dm.GridPos(x=x, y=y, w=w, h=h))
    )
    for index, query in enumerate(spec.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + index)))
    if spec.unit:
        builder = builder.unit(spec.unit)
    if spec.min is not None:
        builder = builder.min(spec.min)
    if spec.max is not None:
        builder = builder.max(spec.max)
    if spec.steps:
        builder = builder.thresholds(_thresholds(spec.steps))
    if spec.repeat:
        builder = builder.repeat(spec.repeat).repeat_direction("h")
        builder = builder.max_per_row(2)
    return builder


def datasource_variable() -> dashboard.DatasourceVariable:
    """Return the ``datasource`` variable every query uses (a Prometheus data source)."""
    return (
        dashboard.DatasourceVariable("datasource")
        .label("Data source")
        .type("prometheus")
        .current(
            dm.VariableOption(selected=True, text=DEFAULT_DATASOURCE, value=DEFAULT_DATASOURCE)
        )
    )


def alert_annotation(name: str, alert: str, color: str, title: str) -> dashboard.AnnotationQuery:
    """Return an annotation that marks when a Prometheus alert fires."""
    return (
        dashboard.AnnotationQuery()
        .name(name)
        .datasource(DATASOURCE)
        .enable(True)
        .hide(False)
        .icon_color(color)
        .expr(f'ALERTS{{alertname="{alert}", alertstate="firing"}}')
    )


@dataclass(frozen=True)
class Board:
    """One dashboard: identity, links, annotations, variables and panels."""

    uid: str
    title: str
    description: str
    tags: Sequence[str]
    link: tuple[str, str]
    panels: Sequence[P]
    annotations: Sequence[tuple[str, str, str, str]] = ()
    variables: Sequence[Any] = ()


def build_dashboard(board: Board) -> dict[str, Any]:
    """Return the dashboard as a JSON-ready dict."""
    builder = (
        dashboard.Dashboard(board.title)
        .uid(board.uid)
        .description(board.description)
        .tags(list(board.tags))
        .timezone("browser")
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .refresh("5s")
        .time("now-1h", "now")
        .version(1)
        .link(
            dashboard.DashboardLink(board.link[0])
            .type(dm.DashboardLinkType.LINK)
            .url(board.link[1])
            .icon("dashboard")
        )
        .with_variable(datasource_variable())
    )
    for variable in board.variables:
        builder = builder.with_variable(variable)
    for annotation in board.annotations:
        builder = builder.annotation(alert_annotation(*annotation))
    for index, spec in enumerate(board.panels, start=1):
        builder = builder.with_panel(build_panel(spec, index))
    doc: dict[str, Any] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # Prometheus annotation fields the SDK's generic AnnotationQuery does not model.
    titles = {name: title for name, _, _, title in board.annotations}
    for annotation in doc.get("annotations", {}).get("list", []):
        if annotation.get("name") in titles:
            annotation.update(
                step="5s",
                titleFormat=titles[annotation["name"]],
                textFormat="{{alertname}} ({{severity}})",
                tagKeys="alertname,severity",
                useValueForTime=False,
            )
    return doc


def recipient_variable() -> dashboard.QueryVariable:
    """Return the ``recipient`` variable of the bulk-export dashboard (multi, with All)."""
    query = "label_values(consentinel_detector_recipient_photos_last_hour, recipient)"
    return (
        dashboard.QueryVariable("recipient")
        .label("Recipient")
        .datasource(DATASOURCE)
        .query(
            {"qryType": 1, "query": query, "refId": "PrometheusVariableQueryEditor-VariableQuery"}
        )
        .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .multi(True)
        .include_all(True)
        .all_value(".+")
        .sort(dm.VariableSort.ALPHABETICAL_ASC)
        .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"]))
    )


R = '{recipient=~"$recipient"}'

# fmt: off

BULK_EXPORT = Board(
    uid="consentinel-bulk-export",
    title="Bulk export",
    description="Photos leaving to each recipient against its bulk_export limit and learned "
    "baseline, with the bulk-export and suspension alerts.",
    tags=("consentinel", "governance", "security"),
    link=("Consent enforcement", "/d/consentinel-consent-enforcement"),
    variables=(recipient_variable(),),
    annotations=(
        ("Bulk export alerts", "ConsentinelBulkExportInProgress", "red",
         "Bulk export to {{recipient}}"),
        ("Recipient suspended", "ConsentinelRecipientSuspended", "orange", "Recipient suspended"),
        ("Near export limit", "ConsentinelRecipientNearExportLimit", "yellow",
         "{{recipient}} near its limit"),
    ),
    panels=(
        P("stat", "Active bulk-export episodes",
          "Recipients the detector currently sees exporting above their limit or baseline.",
          (0, 0, 6, 4), [Q('sum(consentinel_detector_episode_active{kind="BULK_EXPORT"})')],
          steps=GREEN_RED_AT_1),
        P("stat", "Suspended recipients",
          "Recipients held by a SUSPEND_RECIPIENT control (the gate's view).",
          (6, 0, 6, 4), [Q("max(consentinel_gate_suspended_recipients)")], steps=GREEN_ORANGE_AT_1),
        P("stat", "Detector up",
          "Detector processes Prometheus can scrape (job consentinel-detector).",
          (12, 0, 6, 4), [Q('sum(up{job="consentinel-detector"})')], steps=RED_GREEN_AT_1),
        P("stat", "Decisions consumed per second",
          "Decisions the detector reads from governance.decisions (1 m rate). 0 while the gate "
          "decides means the detector is stalled.",
          (18, 0, 6, 4), [Q("sum(rate(consentinel_detector_decisions_consumed_total[1m]))")],
          unit="reqps"),
        P("timeseries", "$recipient: photos in the last hour vs limit and baseline",
          "Photos leaving to this recipient in the sliding hour, its bulk_export limit "
          "(max_photos_per_hour), its learned baseline and the threshold the detector applies now "
          "(the lower of the limit and the learned threshold). Red marks are bulk-export alerts.",
          (0, 4, 12, 9),
          [Q(f"max by (recipient) (consentinel_detector_recipient_photos_last_hour{R})",
             "photos in last hour"),
           Q(f"max by (recipient) (consentinel_detector_recipient_limit_photos_per_hour{R})",
             "limit"),
           Q(f"max by (recipient) (consentinel_detector_recipient_baseline_photos_per_hour{R})",
             "baseline"),
           Q(f"max by (recipient) (consentinel_detector_recipient_threshold_photos_per_hour{R})",
             "alert threshold")],
          unit="short", line_width=2, fill=0, repeat="recipient",
          colors={"limit": "red", "alert threshold": "orange", "baseline": "blue"},
          line_styles={"limit": ("dash", [10, 10]), "baseline": ("dot", [0, 10])}),
        P("bargauge", "Share of hourly limit used",
          "Photos in the last hour divided by the recipient's max_photos_per_hour. Warning at "
          "80 %, bulk export above 100 %.",
          (0, 13, 12, 8),
          [Q(f"100 * recipient:consentinel_detector_limit_usage:ratio{R}", "{{recipient}}",
             instant=True)],
          unit="percent", min=0, max=150,
          steps=(("green", None), ("orange", 80), ("red", 100))),
        P("timeseries", "Photos out per hour by recipient (gate)",
          "The gate's count of photos leaving, as an hourly rate (1 m window), for comparison "
          "with the detector's sliding hour.",
          (12, 13, 12, 8),
          [Q(f"3600 * recipient:consentinel_gate_photos_out:rate1m{R}", "{{recipient}}")],
          unit="short"),
        P("timeseries", "Active detector episodes",
          "Episodes currently active (alert raised, volume not yet back below the re-arm level), "
          "by alert kind and subject kind. One alert per episode.",
          (0, 21, 12, 8),
          [Q("sum by (kind, subject_kind) (consentinel_detector_episode_active)",
             "{{kind}} ({{subject_kind}})")],
          unit="short", min=0),
        P("timeseries", "Detector alerts and suspensions since start",
          "Alerts written to governance.alerts by kind and severity, and SUSPEND_RECIPIENT "
          "controls written by the detector, since it started.",
          (12, 21, 12, 8),
          [Q("sum by (kind, severity) (consentinel_detector_alerts_total)",
             "{{kind}} {{severity}}"),
           Q(f"sum by (recipient) (consentinel_detector_suspensions_total{R})",
             "suspensions of {{recipient}}")],
          unit="short"),
        P("timeseries", "Detection latency p50 / p99",
          "From the crossing decision's decided_at to the alert being produced (5 m window). The "
          "contract asks for under 5 s.",
          (0, 29, 8, 8),
          [Q("histogram_quantile(0.5, sum by (le) "
             "(rate(consentinel_detector_alert_latency_seconds_bucket[5m])))", "p50"),
           Q("histogram_quantile(0.99, sum by (le) "
             "(rate(consentinel_detector_alert_latency_seconds_bucket[5m])))", "p99")],
          unit="s", steps=LATENCY_5S),
        P("timeseries", "Detector event lag",
          "Wall-clock time minus the event time of the latest decision the detector processed.",
          (8, 29, 8, 8),
          [Q("max by (instance) (consentinel_detector_event_lag_seconds)", "{{instance}}")],
          unit="s"),
        P("timeseries", "Detector readiness and alert updates",
          "1 when the detector's state is restored and running; updates of already raised alerts "
          "per second (refreshed counts of an ongoing episode).",
          (16, 29, 8, 8),
          [Q("min(consentinel_detector_ready)", "ready"),
           Q("sum by (kind) (rate(consentinel_detector_alert_updates_total[1m]))",
             "updates/s {{kind}}")],
          unit="short"),
        P("table", "Firing Consentinel alerts",
          "Prometheus alerts of this project currently firing; each has a runbook section in "
          "docs/runbook.md.",
          (0, 37, 24, 7),
          [Q('ALERTS{alertname=~"Consentinel.*", alertstate="firing"}', instant=True, table=True)],
          hide_columns=("Time", "Value", "__name__", "alertstate")),
    ),
)

CONSENT_ENFORCEMENT = Board(
    uid="consentinel-consent-enforcement",
    title="Consent enforcement",
    description="What the consent gate decides: verdicts, denials, photos leaving, holds, "
    "latency, dead letters and lag; recall orders and the trust checks' dead letters.",
    tags=("consentinel", "governance"),
    link=("Bulk export", "/d/consentinel-bulk-export"),
    annotations=(
        ("Recall orders overdue", "ConsentinelRecallOrdersOverdue", "red",
         "Recall orders overdue at {{recipient}}"),
    ),
    panels=(
        P("stat", "Gate targets up", "Gate processes Prometheus can scrape (job consentinel-gate).",
          (0, 0, 4, 4), [Q('sum(up{job="consentinel-gate"})')], steps=RED_GREEN_AT_1),
        P("stat", "Gate workers ready",
          "Gate processes whose assigned partitions are restored and controls read (/ready).",
          (4, 0, 4, 4), [Q("sum(consentinel_gate_ready)")], steps=RED_GREEN_AT_1),
        P("stat", "Assigned partitions", "Input partitions the gate workers decide for, summed.",
          (8, 0, 4, 4), [Q("sum(consentinel_gate_assigned_partitions)")]),
        P("stat", "Suspended recipients",
          "Recipients held by a SUSPEND_RECIPIENT control: their requests get HOLD.",
          (12, 0, 4, 4), [Q("max(consentinel_gate_suspended_recipients)")],
          steps=GREEN_ORANGE_AT_1),
        P("stat", "Retroactive violations (24 h)",
          "Allowed requests later found to predate a consent withdrawal.",
          (16, 0, 4, 4), [Q("sum(increase(consentinel_gate_retroactive_violations_total[24h]))")],
          steps=GREEN_RED_AT_1),
        P("stat", "Policy version", "The policy version stamped on every decision.",
          (20, 0, 4, 4), [Q("max by (version) (consentinel_gate_policy_info)", "{{version}}")],
          stat_text="name", stat_color="none"),
        P("timeseries", "Decisions per second by verdict",
          "Decisions written to governance.decisions (1 m rate). Only ALLOW lets a photo leave.",
          (0, 4, 12, 8), [Q("verdict:consentinel_gate_decisions:rate1m", "{{verdict}}")],
          unit="reqps", fill=20, stacked=True,
          colors={"ALLOW": "green", "DENY": "red", "HOLD": "orange"}),
        P("timeseries", "Denials by reason",
          "DENY decisions per second by reason (1 m rate). A jump in one reason usually means a "
          "misconfigured integration or a wave of withdrawals.",
          (12, 4, 12, 8), [Q("reason:consentinel_gate_denials:rate1m", "{{reason}}")],
          unit="reqps"),
        P("bargauge", "Top recipients by photos out (last hour)",
          "Photos allowed to leave (approved shares and allowed training reads) per recipient over "
          "the last hour.",
          (0, 12, 8, 8),
          [Q("topk(10, sum by (recipient) (increase(consentinel_gate_photos_out_total[1h])))",
             "{{recipient}}", instant=True)],
          unit="short"),
        P("timeseries", "Photos out per second by recipient",
          "Rate of photos leaving, per recipient (top 10).",
          (8, 12, 8, 8), [Q("topk(10, recipient:consentinel_gate_photos_out:rate1m)",
                            "{{recipient}}")],
          unit="reqps"),
        P("timeseries", "Holds and suspensions",
          "HOLD decisions per second (requests for suspended recipients), suspended recipients, "
          "and auto-suspensions by the detector since it started.",
          (16, 12, 8, 8),
          [Q('sum(rate(consentinel_gate_decisions_total{verdict="HOLD"}[1m])) or vector(0)',
             "holds/s"),
           Q("max(consentinel_gate_suspended_recipients)", "suspended recipients"),
           Q("sum by (recipient) (consentinel_detector_suspensions_total)",
             "auto-suspensions of {{recipient}}")],
          unit="short"),
        P("timeseries", "Decision latency p50 / p99",
          "From a request's occurred_at to its committed decision (5 m window). The alert fires "
          "above 5 s p99.",
          (0, 20, 12, 8),
          [Q("job:consentinel_gate_decision_latency_seconds:p50_5m", "p50"),
           Q("job:consentinel_gate_decision_latency_seconds:p99_5m", "p99")],
          unit="s", steps=LATENCY_5S),
        P("timeseries", "Consumer lag by topic",
          "Input records not yet decided (high watermark minus position), summed over gate "
          "workers.",
          (12, 20, 12, 8), [Q("topic:consentinel_gate_consumer_lag_messages:sum", "{{topic}}")],
          unit="short"),
        P("timeseries", "Dead letters (per 5 min)",
          "Records sent to governance.dlq instead of getting a decision (gate) or being counted "
          "(detector), by error kind.",
          (0, 28, 8, 8),
          [Q("sum by (kind) (increase(consentinel_gate_dead_letters_total[5m]))", "gate {{kind}}"),
           Q("sum by (kind) (increase(consentinel_detector_dead_letters_total[5m]))",
             "detector {{kind}}"),
           Q("sum(increase(consentinel_gate_dead_letters_total[5m])) or vector(0)",
             "gate, all kinds")],
          unit="short"),
        P("timeseries", "Kafka transactions",
          "Gate transactions per second by outcome. Aborts rewind to the last commit; a steady "
          "stream of them means broker trouble.",
          (8, 28, 8, 8),
          [Q("sum by (outcome) (rate(consentinel_gate_transactions_total[1m]))", "{{outcome}}")],
          unit="ops"),
        P("table", "Detector alerts since start",
          "Alerts the detector wrote to governance.alerts, by kind and severity, since it started.",
          (16, 28, 8, 8),
          [Q("sum by (kind, severity) (consentinel_detector_alerts_total)", instant=True,
             table=True)],
          hide_columns=("Time",)),
        P("timeseries", "State restore",
          "p99 time to restore a partition's state from its changelog (15 m window) and changelog "
          "records replayed per second.",
          (0, 36, 12, 8),
          [Q("histogram_quantile(0.99, sum by (le) "
             "(rate(consentinel_gate_state_restore_duration_seconds_bucket[15m])))",
             "restore p99 (s)"),
           Q("sum(rate(consentinel_gate_state_restored_records_total[1m]))",
             "records replayed/s")],
          unit="short"),
        P("timeseries", "Events per transaction",
          "Input events processed per Kafka transaction (p50, p99 over 5 m).",
          (12, 36, 12, 8),
          [Q("histogram_quantile(0.5, sum by (le) "
             "(rate(consentinel_gate_batch_events_bucket[5m])))", "p50"),
           Q("histogram_quantile(0.99, sum by (le) "
             "(rate(consentinel_gate_batch_events_bucket[5m])))", "p99")],
          unit="short"),
        P("stat", "Recall orders overdue",
          "Recall orders not fully acknowledged by their due_at, over all recipients (each raised "
          "one RECALL_OVERDUE alert). Runbook: ConsentinelRecallOrdersOverdue.",
          (0, 44, 4, 8),
          [Q('sum(consentinel_detector_recall_orders{state="overdue"}) or vector(0)')],
          steps=GREEN_RED_AT_1),
        P("timeseries", "Open recall orders by recipient",
          "Recall orders (erasures, withdrawals, unconsented training) issued to each recipient "
          "and not yet fully acknowledged, before their due_at.",
          (4, 44, 10, 8),
          [Q('sum by (recipient) (consentinel_detector_recall_orders{state="open"})',
             "{{recipient}}")],
          unit="short", min=0),
        P("timeseries", "Overdue recall orders by recipient",
          "Recall orders past their due_at without a full acknowledgement (photos not deleted or "
          "models not purged), per recipient: chase the recipient or escalate to its DPA contact.",
          (14, 44, 10, 8),
          [Q('sum by (recipient) (consentinel_detector_recall_orders{state="overdue"})',
             "{{recipient}}")],
          unit="short", min=0, steps=GREEN_RED_AT_1),
        P("timeseries", "Trust dead letters (per 5 min)",
          "Inputs the gate refused on trust grounds (CONTRACT section 3) by kind and input topic: "
          "INVALID_TIME (occurred_at outside the policy's time bounds around the broker's append "
          "time), MISROUTED (key or partition not the owner's), DUPLICATE_EVENT_ID (an event id "
          "reused with other content), INPUT_TOO_LARGE, UNKNOWN_RECIPIENT (a consent change naming "
          "a recipient the policy does not know: a withdrawal that would withdraw nothing), "
          "UNVERIFIED_ACK (a recall acknowledgement not signed by the recipient's key, or naming "
          "another recipient's order: it closed nothing).",
          (0, 52, 24, 8),
          [Q("sum by (kind, topic) (increase(consentinel_gate_dead_letters_total"
             '{kind=~"INVALID_TIME|MISROUTED|DUPLICATE_EVENT_ID|INPUT_TOO_LARGE|'
             'UNKNOWN_RECIPIENT"}[5m]))',
             "{{kind}} on {{topic}}"),
           Q("sum by (kind, topic) (increase(consentinel_detector_dead_letters_total"
             '{kind="UNVERIFIED_ACK"}[5m]))',
             "{{kind}} on {{topic}}")],
          unit="short", min=0),
    ),
)

# fmt: on

BOARDS = {"bulk-export.json": BULK_EXPORT, "consent-enforcement.json": CONSENT_ENFORCEMENT}


def render() -> dict[str, str]:
    """Return file name → JSON text of every dashboard."""
    return {
        name: json.dumps(build_dashboard(board), indent=2, ensure_ascii=False) + "\n"
        for name, board in BOARDS.items()
    }


def main(argv: list[str] | None = None) -> int:
    """Write (or with ``--check`` compare) grafana/dashboards/*.json; return an exit code."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if a file is out of date")
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = OUT / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
    if stale:
        print(f"out of date: {', '.join(stale)}; run grafana/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
