"""Alerts reach a person: Prometheus → Alertmanager → a webhook receiver, live.

Starts, on free local ports and in a temporary directory, Debian's ``prometheus`` with the real
rule file (``deploy/prometheus/rules/``) and the ``external_labels`` of ``prometheus.yml``,
``prometheus-alertmanager`` with the real ``deploy/alertmanager/alertmanager.yml`` (only the
receiver's URL replaced), a tiny exporter that serves the detector metrics of a bulk export in
progress, and a webhook receiver. The receiver must get ``ConsentinelBulkExportInProgress``,
firing, with its summary and an absolute runbook link built from CONSENTINEL_RUNBOOK_BASE_URL.

The metrics come from the test's exporter, so this checks the routing alone in ~15 s; the
end-to-end variant (a simulated bulk export through a real gate and detector) is
tests/observability/test_live.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.support import RUNBOOK_BASE, HttpServer, start_alertmanager
from tests.support import free_port

pytestmark = [pytest.mark.alerting, pytest.mark.prometheus]

REPO = Path(__file__).resolve().parents[2]
PROM_CONFIG = REPO / "deploy" / "prometheus" / "prometheus.yml"
RULES = REPO / "deploy" / "prometheus" / "rules"

BULK_EXPORT_METRICS = b"""\
# TYPE consentinel_detector_recipient_photos_last_hour gauge
consentinel_detector_recipient_photos_last_hour{recipient="acme-vision"} 9000
# TYPE consentinel_detector_recipient_threshold_photos_per_hour gauge
consentinel_detector_recipient_threshold_photos_per_hour{recipient="acme-vision"} 5000
# TYPE consentinel_detector_recipient_limit_photos_per_hour gauge
consentinel_detector_recipient_limit_photos_per_hour{recipient="acme-vision"} 5000
# TYPE consentinel_detector_episode_active gauge
consentinel_detector_episode_active{kind="BULK_EXPORT"} 1
"""


def _wait(url: str, what: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{what} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{what} not ready: {log.read_text()[-2000:]}")


@pytest.fixture
def receiver() -> Iterator[HttpServer]:
    server = HttpServer()
    yield server
    server.close()


@pytest.fixture
def pipeline(tmp_path: Path, receiver: HttpServer) -> Iterator[dict[str, int]]:
    prom_exe = shutil.which("prometheus")
    if prom_exe is None:
        pytest.fail("needs Debian's prometheus (see .ci/run)")
    exporter = HttpServer(BULK_EXPORT_METRICS)
    am_port, prom_port = free_port(), free_port()

    prom_doc = yaml.safe_load(PROM_CONFIG.read_text())
    prom_doc["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    prom_doc["rule_files"] = [str(RULES / "*.yml")]
    prom_doc["scrape_configs"] = [
        {
            "job_name": "consentinel-detector",
            "static_configs": [{"targets": [f"127.0.0.1:{exporter.port}"]}],
        }
    ]
    prom_doc["alerting"]["alertmanagers"] = [
        {"static_configs": [{"targets": [f"127.0.0.1:{am_port}"]}]}
    ]
    prom_file = tmp_path / "prometheus.yml"
    prom_file.write_text(yaml.safe_dump(prom_doc))

    procs: list[subprocess.Popen[bytes]] = []
    try:
        am_log = tmp_path / "alertmanager.log"
        procs.append(start_alertmanager(tmp_path, am_port, receiver.url, am_log))
        _wait(f"http://127.0.0.1:{am_port}/-/ready", "alertmanager", procs[-1], am_log)
        prom_log = tmp_path / "prometheus.log"
        with prom_log.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    [
                        prom_exe,
                        f"--config.file={prom_file}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prom_port}",
                        "--enable-feature=expand-external-labels",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "CONSENTINEL_RUNBOOK_BASE_URL": RUNBOOK_BASE},
                )
            )
        _wait(f"http://127.0.0.1:{prom_port}/-/ready", "prometheus", procs[-1], prom_log)
        yield {"alertmanager": am_port, "prometheus": prom_port}
    finally:
        for proc in reversed(procs):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        exporter.close()


def test_bulk_export_alert_reaches_the_webhook(
    pipeline: dict[str, int], receiver: HttpServer
) -> None:
    deadline = time.monotonic() + 60
    delivered: list[dict[str, Any]] = []
    while time.monotonic() < deadline and not delivered:
        delivered = receiver.alerts("ConsentinelBulkExportInProgress")
        time.sleep(0.5)
    assert delivered, f"no ConsentinelBulkExportInProgress delivered; got {receiver.posts}"
    alert = delivered[0]
    assert alert["status"] == "firing"
    assert alert["labels"]["severity"] == "critical"
    assert alert["labels"]["system"] == "consentinel"
    assert alert["labels"]["recipient"] == "acme-vision"
    assert alert["annotations"]["summary"] == "Bulk export in progress to acme-vision"
    assert alert["annotations"]["runbook_url"] == (
        f"{RUNBOOK_BASE}#runbook-consentinelbulkexportinprogress"
    )
    anchor = "runbook-consentinelbulkexportinprogress"
    assert f"## {anchor}" in (REPO / "docs" / "runbook.md").read_text()
