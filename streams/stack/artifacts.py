"""Fetching the local stack's server artifacts from Maven Central, once, into the stack home."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

from streams.errors import StackError

POM = Path(__file__).resolve().parents[2] / "deploy" / "local" / "pom.xml"
REGISTRY_TARBALL_GLOB = "apicurio-registry-app-*-all.tar.gz"


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()[:16]


def ensure_artifacts(home: Path, *, say: Callable[[str], None] = print) -> tuple[Path, Path]:
    """Make sure Kafka's jars and the unpacked registry exist under ``home``; fetch on first use.

    Returns ``(kafka_lib_dir, registry_app_dir)``. A completed fetch leaves a marker named after the
    pom's digest, so editing the pom (a version bump) fetches again and nothing else does.
    """
    lib = home / "lib"
    registry = home / "registry"
    marker = home / f".fetched-{_pom_digest()}"
    if marker.exists() and (registry / "quarkus-run.jar").exists():
        return lib, registry
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            "Maven (`mvn`) is needed once to fetch Kafka and the schema registry",
            hint="install it (`apt-get install maven`) or use an existing stack via "
            "KAFKA_BOOTSTRAP_SERVERS and SCHEMA_REGISTRY_URL",
        )
    if not POM.exists():
        raise StackError(f"the stack's pom is missing at {POM}", hint="reinstall from a checkout")
    say(f"fetching Kafka and Apicurio Registry from Maven Central into {lib} (first use only)...")
    if lib.exists():
        shutil.rmtree(lib)
    lib.mkdir(parents=True)
    cmd = [
        mvn,
        "-B",
        "-q",
        "-f",
        str(POM),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={lib}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
        raise StackError(
            f"Maven could not fetch the stack's artifacts:\n{tail}",
            hint="check that Maven Central is reachable (proxy settings in ~/.m2/settings.xml)",
        )
    tarballs = sorted(lib.glob(REGISTRY_TARBALL_GLOB))
    if not tarballs:
        raise StackError(f"Maven finished but no {REGISTRY_TARBALL_GLOB} arrived in {lib}")
    say(f"unpacking {tarballs[-1].name} into {registry}...")
    if registry.exists():
        shutil.rmtree(registry)
    registry.mkdir(parents=True)
    with tarfile.open(tarballs[-1]) as archive:
        archive.extractall(registry, filter="data")
    tarballs[-1].unlink()
    for old in home.glob(".fetched-*"):
        old.unlink()
    marker.write_text("ok\n")
    return lib, registry
