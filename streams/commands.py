"""What each ``consentinel`` command does, given its parsed arguments and the settings.

Every handler is thin: it imports the module that does the work when it runs (so ``--help`` and
a command that needs none of them stay fast) and returns the exit code. The parser and the
dispatch are :mod:`streams.cli`.
"""

from __future__ import annotations

import argparse
import sys

from streams.errors import ConfigError
from streams.settings import Settings


def stack(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel stack up|down|status [--secure] [--brokers 3]``: the local servers."""
    from streams.stack.local import LocalStack

    stack = LocalStack(settings.stack_home)
    if args.action == "credentials":
        return credentials(args, settings)
    if args.action == "up":
        stack.up(secure=args.secure, brokers=args.brokers)
    elif args.action == "down":
        stack.down()
    else:
        stack.status()
    return 0


def credentials(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel stack credentials PRINCIPAL``: a principal's client settings."""
    from streams.admin.acl_plan import ACLS_FILE, load_acl_plan
    from streams.stack.secure import credentials_lines

    if not args.principal:
        raise ConfigError(
            "`stack credentials` needs a PRINCIPAL",
            hint="e.g. consentinel stack credentials egress",
        )
    prefix = settings.topic_prefix
    known = load_acl_plan(ACLS_FILE, prefix=prefix).principals
    for line in credentials_lines(settings.stack_home, args.principal, known, prefix=prefix):
        print(line)
    return 0


def acls(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel acls apply``: the SCRAM users and ACLs of ``deploy/acls.yaml``."""
    from streams.admin.acl_plan import ACLS_FILE
    from streams.admin.acls import apply_from_settings
    from streams.stack.secure import passwords_file

    apply_from_settings(
        settings.kafka_config(),
        acls_path=args.file or ACLS_FILE,
        passwords_path=args.passwords or passwords_file(settings.stack_home),
        prefix=settings.topic_prefix,
    )
    return 0


def topics(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel topics apply``: create or align the topics."""
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


def schemas(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel schemas register``: register the Avro schemas (FULL_TRANSITIVE)."""
    from streams.serde.catalog import TOPIC_RECORDS, prefixed_catalog
    from streams.serde.registry import make_client, register_all, subject_compatibility

    client = make_client(settings.schema_registry_url, credentials=settings.registry_basic_auth())
    registered = register_all(
        client,
        prefixed_catalog(settings),
        topics=[settings.topic_prefix + t for t in TOPIC_RECORDS],
    )
    for subject, schema_id, version in registered:
        level = subject_compatibility(client, subject)
        print(f"{subject}: id {schema_id}, version {version} (compatibility {level})")
    return 0


def gate(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel gate``: run the consent gate until stopped."""
    from streams.gate.app import run_gate

    return run_gate(
        settings, policy_path=args.policy or settings.policy_path, unsigned=args.unsigned
    )


def audit(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel audit verify|keygen``: check the decision trail, or make signing keys."""
    if args.action == "keygen":
        from streams.core.checkpoint import generate_key_pair

        private, public, key_id = generate_key_pair(args.out)
        print(f"signing key (keep secret, mode 0600): {private}")
        print(f"verify key (give to auditors):        {public}")
        print(f"key_id: {key_id}")
        print(f"gate: CONSENTINEL_SIGNING_KEY={private}  auditors: CONSENTINEL_VERIFY_KEY={public}")
        return 0

    from confluent_kafka import KafkaException

    from streams.errors import StackError, TransientError
    from streams.report.audit_verify import EXIT_UNREADABLE, verify_decisions

    try:
        return verify_decisions(settings, say=print, from_checkpoint=args.from_checkpoint)
    except (StackError, TransientError, KafkaException) as exc:
        print(f"consentinel: unreachable: cannot read the decision trail: {exc}", file=sys.stderr)
        return EXIT_UNREADABLE


def recipients(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel recipients suspend|resume ORG``: write a control."""
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
    from streams.admin.controls import RESUME, SUSPEND

    kind = SUSPEND if args.action == "suspend" else RESUME
    topic, record = issue_control(
        kind, args.name, args.reason, actor=args.actor, policy=policy, settings=settings
    )
    print(describe_control(topic, record))
    return 0


def report(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel report decisions|user|transfers|recalls``: reports over the trail."""
    from streams.report.regulator import recalls_report, transfers_report
    from streams.report.run import decisions_report, user_report

    if args.kind == "transfers":
        print(
            transfers_report(
                settings,
                recipients=args.recipient,
                since=args.since,
                until=args.until,
                fmt=args.format,
                out=args.out,
                top=args.top,
            )
        )
        return 0
    if args.kind == "recalls":
        print(
            recalls_report(
                settings, recipients=args.recipient, as_of=args.as_of, fmt=args.format,
                out=args.out, top=args.top,
            )
        )  # fmt: skip
        return 0
    if args.kind == "decisions":
        text = decisions_report(
            settings, since=args.since, until=args.until, fmt=args.format, out=args.out
        )
    else:
        text = user_report(settings, args.user_id, fmt=args.format, out=args.out)
    print(text)
    return 0


def detect(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel detect``: run the detectors until stopped."""
    from streams.detect.app import run_detector

    return run_detector(
        settings,
        policy_path=args.policy or settings.policy_path,
        app_name=args.app_name,
        from_now=args.from_now,
    )


def simulate(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel simulate``: produce a realistic workload."""
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


def lineage(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel lineage --user|--model``: which models read whose photos."""
    from streams.report.lineage import build_lineage, print_model, print_user

    index = build_lineage(settings)
    if args.user:
        print_user(index, args.user)
    else:
        print_model(index, args.model)
    return 0


def demo(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel demo``: the scripted end-to-end story."""
    from streams.demo import run_demo
    from streams.resources import example_policy

    return int(run_demo(settings, policy_path=args.policy or example_policy()))


def egress(args: argparse.Namespace, settings: Settings) -> int:
    """``consentinel egress check --ledger FILE``: approved shares against their decisions."""
    from streams.egress.check import run_egress_check

    return run_egress_check(
        settings, ledger_path=args.ledger, out_path=args.out, timeout_s=args.timeout
    )
