"""A lean install (no extras) names the extra to install instead of dying with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

LEAN = """
import sys
for module in ("polars", "prometheus_client", "rocksdict", "cryptography"):
    sys.modules[module] = None  # as if `pip install consentinel` without [service]
import streams.preflight
streams.preflight.check = lambda *args, **kwargs: None  # no broker needed to get that far
from streams.cli import main
sys.exit(main(["gate", "--policy", "deploy/policy.example.yaml"]))
"""


def test_gate_without_the_service_extra_says_which_extra_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", LEAN], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("consentinel:")]
    assert len(lines) == 1, done.stderr
    assert "pip install 'consentinel[service]'" in lines[0]
    assert "`consentinel gate`" in lines[0]


WITHOUT_POLARS = """
import sys
sys.modules["polars"] = None  # as if `pip install 'consentinel[service]'` without [reports]
import streams.preflight
streams.preflight.check = lambda *args, **kwargs: None  # no broker needed to get that far
from streams.cli import main
sys.exit(main(["report", "decisions"]))
"""


def test_report_without_the_reports_extra_says_which_extra_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_POLARS],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("consentinel:")]
    assert len(lines) == 1, done.stderr
    assert "pip install 'consentinel[reports]'" in lines[0]
    assert "`consentinel report`" in lines[0]


SERVICE_MODULES = """
import sys
sys.modules["polars"] = None  # the service image has no polars
import streams.gate.app, streams.detect.app, streams.report.audit_verify, streams.report.lineage
"""


def test_the_service_image_commands_need_no_polars() -> None:
    """The gate, the detectors, `audit verify` and `lineage` run in the image without [reports]."""
    done = subprocess.run(
        [sys.executable, "-c", SERVICE_MODULES],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
