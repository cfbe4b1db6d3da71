"""The demo's script: who takes part, how many, when, and the policy copy it runs with."""

from __future__ import annotations

from pathlib import Path

import yaml

from streams.core.checkpoint import PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, generate_key_pair

HOUR = 3_600_000
MINUTE = 60_000
BULK_USERS = 300
VENDOR = "acme-vision"
BURST_USERS = 2500
BURST_PHOTOS = 4
BURST_CONSENTING = 0.6
"""The share of the burst's users who consented (so about 6,000 of its 10,000 reads are allowed)."""
BURST_MINUTES = 10
DETECTOR_PORT = 9465
MODEL = "faceprint-2014"
"""The model the bulk-export job trains: the recall orders name it."""
DEMO_TIME_BOUNDS = {"max_skew_s": 1800, "max_lateness_s": 6 * 3600}
"""The demo's events are up to 5 h old (uploads) and up to ~15 min ahead (the export's reads)."""
DEMO_RECALL_DAYS = 0.0002
"""acme-vision's recall deadline in the demo: 0.0002 days, about 17 s."""
ERASED_USERS = 12
"""How many of the export's users ask for their accounts to be erased."""
ACKNOWLEDGED = 6
"""How many of those orders acme-vision acknowledges in full (one more only in part)."""


def vendor_ack_key_dir(state_parent: Path) -> Path:
    """Return where the demo keeps acme-vision's ack key pair (made on first use)."""
    return state_parent / "demo-acme-vision-ack"


def vendor_ack_public_pem(state_parent: Path) -> str:
    """Return the PEM of acme-vision's ack public key, making the key pair on first use."""
    directory = vendor_ack_key_dir(state_parent)
    if not (directory / PUBLIC_KEY_FILE).exists():
        generate_key_pair(directory)
    return (directory / PUBLIC_KEY_FILE).read_text()


def vendor_ack_key(state_parent: Path) -> Path:
    """Return the path of acme-vision's ack private key (see :func:`vendor_ack_public_pem`)."""
    return vendor_ack_key_dir(state_parent) / PRIVATE_KEY_FILE


def demo_policy(policy_path: Path, out: Path) -> Path:
    """Write the demo's policy copy to ``out``: replay time bounds, acme-vision's deadline.

    The copy also lists the public key acme-vision signs its recall acks with (``ack_keys``).
    """
    data = yaml.safe_load(policy_path.read_text())
    data["time"] = dict(DEMO_TIME_BOUNDS)
    vendor = (data.get("recipients") or {}).get(VENDOR)
    if not isinstance(vendor, dict):
        raise RuntimeError(f"the policy {policy_path} has no recipient {VENDOR}: the demo needs it")
    vendor["recall_within_days"] = DEMO_RECALL_DAYS
    vendor["ack_keys"] = [vendor_ack_public_pem(out.parent)]
    data["version"] = f"{data.get('version', 'policy')}+demo"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        f"# Written by `consentinel demo` from {policy_path}: replay time bounds and a short\n"
        f"# recall deadline for {VENDOR}. Not for production.\n"
        + yaml.safe_dump(data, sort_keys=False)
    )
    return out
