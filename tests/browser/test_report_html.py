"""The HTML transfers report, rendered by headless Chromium: the screenshot shows the charts.

Needs ``chromium`` on the PATH (Debian's package; ``.ci/run`` installs it). The page is built from
in-memory records (no Kafka): three recipients' transfers over two days and recall orders in
every state; the test checks the PNG is the window's size, is not blank, and shows each
recipient's and each recall state's colour in a real number of pixels.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from streams.core.ack_signing import sign_ack
from streams.report.html import SERIES_COLOURS, STATE_COLOURS
from streams.report.pages import transfers_page, transfers_view
from streams.report.recalls import recall_states
from streams.report.transfers import transfers_frame
from tests.ack_support import ack_keys_of, fixed_key
from tests.browser.png import read_png

pytestmark = pytest.mark.browser

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
DAY = 24 * HOUR
WIDTH, HEIGHT = 1280, 1500
RECIPIENTS = ("acme-vision", "lovebird-partners", "photo-cdn")


def decisions() -> list[dict[str, Any]]:
    """Hourly transfers for two days: acme-vision busiest, a burst from lovebird on day two."""
    out: list[dict[str, Any]] = []
    for hour in range(48):
        counts = (3 + hour % 5, 12 if 30 <= hour < 34 else 1 + hour % 2, 2)
        for org, count in zip(RECIPIENTS, counts, strict=True):
            for i in range(count):
                n = len(out)
                out.append(
                    {
                        "decision_id": f"d{n}",
                        "decided_at": T0 + hour * HOUR + i * 1000,
                        "subject_kind": "TRAINING_READ" if n % 7 == 0 else "SHARE",
                        "photo_id": f"p{n % 300}",
                        "owner_id": f"u{n % 40}",
                        "recipient_org": org,
                        "purpose": "ML_TRAINING" if org != "photo-cdn" else "SERVICE_OPERATION",
                        "verdict": "ALLOW",
                        "policy_version": "2026-11-26.1" if hour < 30 else "2026-12-01.1",
                        "consent_event_id": f"c{n % 40}",
                    }
                )
    return out


def recall_records() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Orders: 3 open, 2 partial, 1 overdue, 4 acknowledged."""
    orders: list[dict[str, Any]] = []
    acks: list[dict[str, Any]] = []
    for n, state in enumerate(["OPEN"] * 3 + ["PARTIAL"] * 2 + ["OVERDUE"] + ["ACK"] * 4):
        due = T0 + (DAY if state == "OVERDUE" else 30 * DAY)
        orders.append(
            {
                "order_id": f"o{n}",
                "issued_at": T0,
                "recipient_org": RECIPIENTS[n % 2],
                "user_id": f"u{n}",
                "photo_ids": [f"p{n}a", f"p{n}b"],
                "model_ids": [],
                "cause": "ERASURE_REQUESTED",
                "decision_ids": [f"d{n}"],
                "due_at": due,
            }
        )
        done = {"PARTIAL": [f"p{n}a"], "ACK": [f"p{n}a", f"p{n}b"]}.get(state)
        if done:
            acks.append(
                {
                    "order_id": f"o{n}",
                    "recipient_org": RECIPIENTS[n % 2],
                    "acknowledged_at": T0 + HOUR,
                    "deleted_photo_ids": done,
                    "purged_model_ids": [],
                    "evidence": f"ticket-{n}",
                }
            )
    return orders, acks


def sample_page() -> str:
    """The transfers page of the records above."""
    consents = [{"event_id": f"c{i}", "notice_version": "notice-2026-01"} for i in range(40)]
    frame = transfers_frame(decisions(), consents).lazy()
    view = transfers_view(frame, recipients=None, start=None, end=None, top=25)
    orders, acks = recall_records()
    signers = {org: fixed_key(20 + i) for i, org in enumerate(RECIPIENTS)}
    acks = [sign_ack(a, signers[a["recipient_org"]]) for a in acks]
    recalls = recall_states(orders, acks, T0 + 2 * DAY, ack_keys=ack_keys_of(signers))
    return transfers_page(view, recalls, "governance.decisions: in-memory sample")


def screenshot(page: Path, png: Path) -> None:
    """Render ``page`` with headless Chromium into ``png`` (WIDTH x HEIGHT)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "chromium is not installed: apt-get install -y chromium (see .ci/run)"
    command = [
        chromium,
        "--headless",
        "--no-sandbox",  # CI runs as root
        "--disable-gpu",
        "--hide-scrollbars",
        "--force-device-scale-factor=1",
        f"--window-size={WIDTH},{HEIGHT}",
        f"--screenshot={png}",
        page.as_uri(),
    ]
    env = {**os.environ, "HOME": str(png.parent)}  # chromium writes its profile under HOME
    done = subprocess.run(command, capture_output=True, timeout=120, env=env, check=False)
    assert png.exists(), f"no screenshot (exit {done.returncode}): {done.stderr.decode()[-2000:]}"


def near(colours: Iterable[tuple[tuple[int, int, int], int]], hex_colour: str) -> int:
    """How many pixels are within 6 per channel of ``hex_colour``."""
    want = tuple(int(hex_colour[i : i + 2], 16) for i in (1, 3, 5))
    return sum(
        n for rgb, n in colours if all(abs(a - b) <= 6 for a, b in zip(rgb, want, strict=True))
    )


def test_html_report_renders_its_charts_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "transfers.html"
    page.write_text(sample_page(), encoding="utf-8")
    png = tmp_path / "transfers.png"
    screenshot(page, png)
    if os.environ.get("CONSENTINEL_SCREENSHOT_DIR"):  # keep it for a person to look at
        shutil.copy(png, Path(os.environ["CONSENTINEL_SCREENSHOT_DIR"]) / png.name)

    image = read_png(png)
    assert (image.width, image.height) == (WIDTH, HEIGHT)
    colours = list(image.colours(step=2).items())
    total = sum(n for _, n in colours)
    white = near(colours, "#ffffff")
    assert white < 0.95 * total, "the page is (nearly) blank"
    assert len(colours) > 50, "too few colours for text, tables and charts"
    for name, colour in zip(RECIPIENTS, SERIES_COLOURS, strict=False):
        assert near(colours, colour) > 300, f"the bars of {name} ({colour}) are missing"
    for state, colour in STATE_COLOURS.items():
        assert near(colours, colour) > 300, f"the {state} bar ({colour}) is missing"
