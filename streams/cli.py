"""The ``consentinel`` command line: a thin dispatcher onto the package's modules.

Every command reads its settings from the environment once (see :mod:`streams.settings`); errors
of the :class:`~streams.errors.ConsentinelError` family print as one actionable line and exit 2.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streams.errors import ConsentinelError
from streams.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


def _stack(args: argparse.Namespace, settings: Settings) -> int:
    from streams.stack.local import LocalStack

    stack = LocalStack(settings.stack_home)
    if args.action == "up":
        stack.up()
    elif args.action == "down":
        stack.down()
    else:
        stack.status()
    return 0


def _topics(args: argparse.Namespace, settings: Settings) -> int:
    from confluent_kafka.admin import AdminClient

    from streams.admin.topics import apply_topics, load_topic_specs

    admin = AdminClient(settings.kafka_config())
    changes = apply_topics(
        admin, load_topic_specs(args.file, partitions=args.partitions, prefix=settings.topic_prefix)
    )
    for line in changes:
        print(line)
    print(f"topics: {len(changes)} change(s)" if changes else "topics: already up to date")
    return 0


def _schemas(args: argparse.Namespace, settings: Settings) -> int:
    from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
    from streams.serde.registry import register_all

    registered = register_all(
        settings.schema_registry_url,
        prefixed_catalog(settings),
        topics=[settings.topic_prefix + t for t in TOPIC_RECORDS],
    )
    for subject, schema_id, version in registered:
        print(f"{subject}: id {schema_id}, version {version} (compatibility BACKWARD)")
    return 0


def _gate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.gate.app import run_gate

    return run_gate(settings, policy_path=args.policy or settings.policy_path)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    from streams.gate.audit_verify import verify_decisions

    return 0 if verify_decisions(settings, say=print) else 1


def _recipients(args: argparse.Namespace, settings: Settings) -> int:
    from streams.admin.controls import describe_control, issue_control

    policy_path = args.policy or settings.policy_path
    policy = None
    if policy_path is not None:
        from streams.core.policy import load_policy

        policy = load_policy(policy_path)
    else:
        print(
            f"consentinel: warning: no policy given (--policy or CONSENTINEL_POLICY): "
            f"{args.name!r} is not checked against the registered recipients",
            file=sys.stderr,
        )
    kind = "SUSPEND_RECIPIENT" if args.action == "suspend" else "RESUME_RECIPIENT"
    topic, record = issue_control(
        kind, args.name, args.reason, actor=args.actor, policy=policy, settings=settings
    )
    print(describe_control(topic, record))
    return 0


def _report(args: argparse.Namespace, settings: Settings) -> int:
    from streams.report.run import decisions_report, user_report

    if args.kind == "decisions":
        text = decisions_report(
            settings, since=args.since, until=args.until, fmt=args.format, out=args.out
        )
    else:
        text = user_report(settings, args.user_id, fmt=args.format, out=args.out)
    print(text)
    return 0


def _detect(args: argparse.Namespace, settings: Settings) -> int:
    from streams.detect.app import run_detector

    return run_detector(
        settings,
        policy_path=args.policy or settings.policy_path,
        app_name=args.app_name,
        from_now=args.from_now,
    )


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    from streams.simulate.run import run_simulation

    report = run_simulation(
        settings,
        rate=args.rate,
        duration_s=args.duration,
        scenarios=args.scenario,
        seed=args.seed,
        ground_truth_path=args.ground_truth,
        speedup=args.speedup,
        policy_path=args.policy or settings.policy_path,
        users=args.users,
    )
    for line in report.lines():
        print(line)
    return 0


def _lineage(args: argparse.Namespace, settings: Settings) -> int:
    from streams.detect.lineage_query import build_lineage, print_model, print_user

    index = build_lineage(settings)
    if args.user:
        print_user(index, args.user)
    else:
        print_model(index, args.model)
    return 0


def _demo(args: argparse.Namespace, settings: Settings) -> int:
    from streams.demo import run_demo

    return int(run_demo(settings, policy_path=args.policy))


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every ``consentinel`` command."""
    parser = argparse.ArgumentParser(
        prog="consentinel", description="Consent gate and bulk-export detection on Kafka."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka broker, registry and Prometheus")
    stack.add_argument("action", choices=["up", "down", "status"])
    stack.set_defaults(handler=_stack)

    topics = sub.add_parser("topics", help="create or align the topics of deploy/topics.yaml")
    topics.add_argument("action", choices=["apply"])
    topics.add_argument("--file", type=Path, default=None, help="topic layout (default: bundled)")
    topics.add_argument("--partitions", type=int, default=None, help="override partition count")
    topics.set_defaults(handler=_topics)

    schemas = sub.add_parser("schemas", help="register schemas/*.avsc with BACKWARD compatibility")
    schemas.add_argument("action", choices=["register"])
    schemas.set_defaults(handler=_schemas)

    gate = sub.add_parser("gate", help="run the consent gate (exactly-once)")
    gate.add_argument("--policy", type=Path, default=None, help="policy YAML (CONSENTINEL_POLICY)")
    gate.set_defaults(handler=_gate)

    audit = sub.add_parser("audit", help="verify the hash chains of governance.decisions")
    audit.add_argument("action", choices=["verify"])
    audit.set_defaults(handler=_audit)

    recipients = sub.add_parser("recipients", help="suspend or resume a recipient (a Control)")
    recipient_actions = recipients.add_subparsers(dest="action", required=True)
    for action, verb in (("suspend", "hold every request"), ("resume", "lift the suspension")):
        control = recipient_actions.add_parser(action, help=f"{verb} for a recipient")
        control.add_argument("name", help="the recipient_org, as named in the policy")
        control.add_argument(
            "--reason",
            required=action == "suspend",
            default="resumed by an operator",
            help="why, in plain words (recorded)",
        )
        control.add_argument("--actor", default=None, help="who (default: operator:$USER)")
        control.add_argument(
            "--policy", type=Path, default=None, help="refuse names it lacks (CONSENTINEL_POLICY)"
        )
    recipients.set_defaults(handler=_recipients)

    report = sub.add_parser("report", help="reports over governance.decisions")
    report_kinds = report.add_subparsers(dest="kind", required=True)
    totals = report_kinds.add_parser("decisions", help="totals by verdict, recipient, kind, day")
    totals.add_argument("--since", default=None, help="ISO date/time (UTC if no offset)")
    totals.add_argument("--until", default=None, help="ISO date/time, exclusive; a date: its end")
    user = report_kinds.add_parser("user", help="every decision about one user (for a DSAR)")
    user.add_argument("user_id", help="the owner_id / user_id")
    for each, out_help in (
        (totals, "a file for table, a directory for csv/parquet (one file per table)"),
        (user, "a file"),
    ):
        each.add_argument("--format", choices=["table", "csv", "parquet"], default="table")
        each.add_argument("--out", type=Path, default=None, help=out_help)
    report.set_defaults(handler=_report)

    detect = sub.add_parser("detect", help="run the detectors (bulk export, denial bursts, ...)")
    detect.add_argument("--policy", type=Path, default=None, help="policy YAML")
    detect.add_argument(
        "--app-name",
        default="consentinel-detector",
        help="consumer group and state name (after the topic prefix); another name, another state",
    )
    detect.add_argument(
        "--from-now",
        action="store_true",
        help="a detector with no committed offsets starts at the end of its inputs (no replay)",
    )
    detect.set_defaults(handler=_detect)

    simulate = sub.add_parser("simulate", help="produce a realistic dating-app workload")
    simulate.add_argument("--rate", type=float, default=50.0, help="events per simulated second")
    simulate.add_argument("--duration", type=float, default=3600.0, help="simulated seconds")
    simulate.add_argument(
        "--scenario",
        action="append",
        default=[],
        help="inject NAME or NAME@OFFSET: bulk-2014, slow-drip, probe, revoke-after-training",
    )
    simulate.add_argument("--seed", type=int, default=0)
    simulate.add_argument("--users", type=int, default=None, help="population size")
    simulate.add_argument(
        "--speedup", type=float, default=None, help="event time per wall second (default: max)"
    )
    simulate.add_argument("--ground-truth", type=Path, default=None, help="JSON-lines output")
    simulate.add_argument("--policy", type=Path, default=None, help="policy YAML")
    simulate.set_defaults(handler=_simulate)

    lineage = sub.add_parser("lineage", help="which models used whose photos")
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", help="list the models trained on this user's photos")
    which.add_argument("--model", help="list the users behind this model")
    lineage.set_defaults(handler=_lineage)

    demo = sub.add_parser("demo", help="run the scripted end-to-end story against the stack")
    demo.add_argument("--policy", type=Path, default=Path("deploy/policy.example.yaml"))
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``consentinel`` command and return its exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "httpx2"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if args.command == "demo" and not args.verbose:
        logging.getLogger("streams").setLevel(logging.WARNING)  # the story speaks for itself
    try:
        settings = load_settings()
        if getattr(args, "file", None) is None and args.command == "topics":
            from streams.admin.topics import TOPICS_FILE

            args.file = TOPICS_FILE
        handler: Handler = args.handler
        return int(handler(args, settings))
    except ConsentinelError as exc:
        print(f"consentinel: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
