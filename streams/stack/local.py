"""``consentinel stack up|down|status``: the local servers, started and stopped by pid.

Layout under the stack home (``CONSENTINEL_STACK_HOME``, default ``~/.cache/consentinel/stack``)::

    lib/          Kafka's jars (Maven Central)      registry/   the unpacked Apicurio app
    kafka/data/   KRaft log directories             registry/db H2 files of the registry
    logs/*.log    each server's output              run/*.pid   pids of what ``up`` started

Guarantees: ``up`` is idempotent (a running server is left alone); ``down`` signals only the pids
that ``up`` recorded, and only while they still run the command it started; every failure is a
:class:`~streams.errors.StackError` that says what to do.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from streams.errors import StackError
from streams.stack import alertmanager, cluster
from streams.stack.artifacts import ensure_artifacts
from streams.stack.java import find_java
from streams.stack.keys import ensure_key_pair
from streams.stack.kraft import new_cluster_id
from streams.stack.lifecycle import kafka_ready, port_taken, registry_ready, terminate
from streams.stack.prometheus import PROMETHEUS_PORT, identify, prometheus_component, skip_reason

KAFKA_PORT = 9092
CONTROLLER_PORT = 9093
REGISTRY_PORT = 8081
REGISTRY_MANAGEMENT_PORT = 9000
REGISTRY_PATH = "/apis/ccompat/v7"

Say = Callable[[str], None]


@dataclass(frozen=True)
class Component:
    """One server of the stack: how to start it and how to tell that it is ready."""

    name: str
    port: int
    command: list[str]
    cwd: Path
    ready: Callable[[], bool]
    ready_timeout_s: float
    where: str
    optional: bool = False
    """An optional server whose port is taken is skipped with a warning instead of an error."""
    reload: Callable[[], bool] | None = None
    """How to make a running instance re-read its configuration (``up`` calls it)."""
    env: dict[str, str] | None = None
    """The process environment (None: inherit ours)."""


class LocalStack:
    """The servers of one stack home."""

    def __init__(self, home: Path, *, say: Say = print) -> None:
        self.home = home.expanduser().resolve()
        self.say = say
        self.run_dir = self.home / "run"
        self.log_dir = self.home / "logs"

    # -- pid bookkeeping ------------------------------------------------------------------------
    def _pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def running_pid(self, name: str) -> int | None:
        """Return the pid ``up`` recorded for ``name`` if that process is still ours and alive."""
        pid_file = self._pid_file(name)
        if not pid_file.exists():
            return None
        try:
            pid = int(pid_file.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (ValueError, IndexError, OSError):
            pid_file.unlink(missing_ok=True)
            return None
        if str(self.home).encode() not in cmdline:  # the pid was reused by something else
            pid_file.unlink(missing_ok=True)
            return None
        return pid

    # -- components -----------------------------------------------------------------------------
    def _kafka(self, lib: Path) -> Component:
        data = self.home / "kafka" / "data"
        conf_dir = self.home / "kafka"
        conf_dir.mkdir(parents=True, exist_ok=True)
        props = conf_dir / "server.properties"
        props.write_text(
            (Path(__file__).parent / "kafka.properties")
            .read_text()
            .format(data=data, port=KAFKA_PORT, controller_port=CONTROLLER_PORT)
        )
        log4j = conf_dir / "log4j2.properties"
        log4j.write_text(
            (Path(__file__).parent / "kafka-log4j2.properties")
            .read_text()
            .replace("{log}", str(self.log_dir / "kafka-server.log"))
        )
        java = find_java(17, purpose="Kafka 4")
        base = [java, "-cp", f"{lib}/*", f"-Dlog4j2.configurationFile={log4j}"]
        if not (data / "meta.properties").exists():
            cluster_id = new_cluster_id()
            fmt = [*base, "kafka.tools.StorageTool", "format", "-t", cluster_id, "-c", str(props)]
            result = subprocess.run(
                [*fmt, "--standalone", "--ignore-formatted"],
                capture_output=True,
                text=True,
                check=False,
            )
            if result.returncode != 0:
                raise StackError(
                    f"formatting KRaft storage in {data} failed: {result.stderr.strip()[-800:]}",
                    hint=f"remove {data} and run `consentinel stack up` again",
                )
        heap = ["-Xms256m", "-Xmx1g", "-XX:+UseG1GC"]
        return Component(
            name="kafka",
            port=KAFKA_PORT,
            command=[*base[:1], *heap, *base[1:], "kafka.Kafka", str(props)],
            cwd=conf_dir,
            ready=partial(kafka_ready, KAFKA_PORT),
            ready_timeout_s=90,
            where=f"localhost:{KAFKA_PORT} (data {data})",
        )

    def _registry(self, app: Path) -> Component:
        java = find_java(21, purpose="Apicurio Registry 3")
        db = self.home / "registry-db" / "registry"
        db.parent.mkdir(parents=True, exist_ok=True)
        return Component(
            name="registry",
            port=REGISTRY_PORT,
            command=[
                java,
                "-Xms128m",
                "-Xmx512m",
                f"-Dquarkus.http.port={REGISTRY_PORT}",
                "-Dquarkus.http.host=127.0.0.1",
                "-Dquarkus.management.host=127.0.0.1",
                f"-Dquarkus.management.port={REGISTRY_MANAGEMENT_PORT}",
                f"-Dapicurio.datasource.url=jdbc:h2:file:{db};DB_CLOSE_ON_EXIT=FALSE",
                f"-Dconsentinel.stack={self.home}",
                "-jar",
                str(app / "quarkus-run.jar"),
            ],
            cwd=app,
            ready=partial(registry_ready, REGISTRY_PORT, REGISTRY_PATH),
            ready_timeout_s=120,
            where=f"http://localhost:{REGISTRY_PORT}{REGISTRY_PATH} (db {db.parent})",
        )

    def _prometheus(self, port: int = PROMETHEUS_PORT) -> Component | None:
        prom = prometheus_component(self.home, self.log_dir, port=port)
        if prom is None:
            return None
        return Component(
            name="prometheus",
            port=prom.port,
            command=prom.command,
            cwd=prom.cwd,
            ready=prom.ready,
            ready_timeout_s=60,
            where=prom.where,
            optional=True,
            reload=prom.reload,
            env=prom.env,
        )

    def _alertmanager(self) -> Component | None:
        launch = alertmanager.alertmanager_component(self.home)
        if launch is None:
            return None
        return Component(
            name="alertmanager",
            port=launch.port,
            command=launch.command,
            cwd=launch.cwd,
            ready=launch.ready,
            ready_timeout_s=30,
            where=launch.where,
            optional=True,
            reload=launch.reload,
        )

    def _components(self) -> list[Component]:
        lib, app = ensure_artifacts(self.home, say=self.say)
        components = [self._kafka(lib), self._registry(app)]
        prom = self._prometheus()
        if prom is None:
            self.say(f"prometheus: skipped, {skip_reason()}")
        else:
            components.append(prom)
        manager = self._alertmanager()
        if manager is None:
            self.say(f"alertmanager: skipped, {alertmanager.skip_reason()}")
        else:
            components.append(manager)
        return components

    # -- commands -------------------------------------------------------------------------------
    def up(self, *, secure: bool = False, brokers: int = 1) -> None:
        """Start every server that is not running yet and wait until each answers.

        ``secure`` adds the SASL/SCRAM broker with ACLs (:mod:`streams.stack.secure`); ``brokers=3``
        adds the three-node KRaft cluster (:mod:`streams.stack.cluster`). Makes the local signing
        key pair first if there is none (:mod:`streams.stack.keys`).
        """
        if brokers not in (1, cluster.NODES):
            raise StackError(
                f"--brokers {brokers} is not offered",
                hint=f"use 1 (the default single node) or {cluster.NODES} (a local KRaft cluster)",
            )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        ensure_key_pair(self.home, say=self.say)  # the gate refuses to start keyless
        for component in [*self._components(), *self._secure_components(secure)]:
            pid = self.running_pid(component.name)
            if pid is not None:
                self.say(f"{component.name}: already running (pid {pid}) at {component.where}")
                if component.reload is not None:
                    done = component.reload()
                    self.say(
                        f"{component.name}: configuration reloaded"
                        if done
                        else f"{component.name}: reloading its configuration failed; "
                        f"read {self.log_dir / (component.name + '.log')}"
                    )
                continue
            if port_taken(component.port) and component.optional:
                other = identify(component.port) or "a process this stack did not start"
                self.say(
                    f"{component.name}: not started, port {component.port} is taken by {other}. "
                    f"Point that server at the project's config, or stop it and run "
                    f"`consentinel stack up` again (`ss -ltnp 'sport = :{component.port}'` shows "
                    "which process it is)"
                )
                continue
            if port_taken(component.port):
                raise StackError(
                    f"port {component.port} is taken by a process this stack did not start, "
                    f"so {component.name} cannot listen there",
                    hint=f"stop it (`ss -ltnp 'sport = :{component.port}'` shows which), or use "
                    "that server through KAFKA_BOOTSTRAP_SERVERS / SCHEMA_REGISTRY_URL",
                )
            proc, log = self._spawn(component)
            self._wait_ready(component, proc, log)
            self.say(f"{component.name}: ready (pid {proc.pid}) at {component.where}")
        if brokers == cluster.NODES:
            self.up_cluster()
        self.say(f"stack home: {self.home} (logs in {self.log_dir})")

    def _spawn(self, component: Component) -> tuple[subprocess.Popen[bytes], Path]:
        """Start ``component`` in its own session, its output to its log; record its pid."""
        log = self.log_dir / f"{component.name}.log"
        self.say(f"{component.name}: starting (log {log})...")
        with log.open("ab") as out:
            proc = subprocess.Popen(
                component.command,
                cwd=component.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=component.env,
            )
        self._pid_file(component.name).write_text(f"{proc.pid}\n")
        return proc, log

    def up_cluster(self) -> None:
        """Start the cluster's missing nodes together (a lone node has no quorum), then wait."""
        lib, _ = ensure_artifacts(self.home, say=self.say)
        java = find_java(17, purpose="Kafka 4")
        started: list[tuple[Component, subprocess.Popen[bytes], Path]] = []
        for node in cluster.cluster_nodes(self.home, lib, self.log_dir, java):
            pid = self.running_pid(node.name)
            if pid is not None:
                self.say(f"{node.name}: already running (pid {pid}) at {node.where}")
                continue
            if port_taken(node.port):
                raise StackError(
                    f"port {node.port} is taken by a process this stack did not start, "
                    f"so {node.name} cannot listen there",
                    hint=f"stop it (`ss -ltnp 'sport = :{node.port}'` shows which)",
                )
            component = Component(
                name=node.name,
                port=node.port,
                command=node.command,
                cwd=node.cwd,
                ready=node.ready,
                ready_timeout_s=120,
                where=node.where,
            )
            proc, log = self._spawn(component)
            started.append((component, proc, log))
        for component, proc, log in started:
            self._wait_ready(component, proc, log)
            self.say(f"{component.name}: ready (pid {proc.pid}) at {component.where}")
        if started:
            self.say(
                f"cluster: {cluster.NODES} nodes at {cluster.bootstrap_servers()} "
                f"(replication factor {cluster.REPLICATION_FACTOR}, min.insync.replicas "
                f"{cluster.MIN_INSYNC_REPLICAS}); e.g. "
                f"KAFKA_BOOTSTRAP_SERVERS={cluster.bootstrap_servers()} consentinel topics apply"
            )

    def _wait_ready(self, component: Component, proc: subprocess.Popen[bytes], log: Path) -> None:
        deadline = time.monotonic() + component.ready_timeout_s
        next_note = time.monotonic() + 10
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._pid_file(component.name).unlink(missing_ok=True)
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-20:])
                raise StackError(
                    f"{component.name} exited with code {proc.returncode} while starting:\n{tail}",
                    hint=f"read {log}",
                )
            if component.ready():
                return
            if time.monotonic() > next_note:
                self.say(f"{component.name}: still waiting for it to answer...")
                next_note = time.monotonic() + 10
            time.sleep(0.5)
        raise StackError(
            f"{component.name} did not become ready within {component.ready_timeout_s:.0f}s",
            hint=f"read {log}; `consentinel stack down` stops what was started",
        )

    def down(self) -> None:
        """Stop the servers this stack started (by recorded pid), newest first."""
        for name in (
            *cluster.NODE_NAMES,
            "kafka-secure",
            "alertmanager",
            "prometheus",
            "registry",
            "kafka",
        ):
            pid = self.running_pid(name)
            if pid is None:
                continue
            self.say(f"{name}: stopping pid {pid}...")
            terminate(pid)
            self._pid_file(name).unlink(missing_ok=True)
            self.say(f"{name}: stopped")

    def status(self) -> dict[str, int | None]:
        """Return each server's pid (None when not running) and print a line for each."""
        result: dict[str, int | None] = {}
        for name, port in (
            ("kafka", KAFKA_PORT),
            ("kafka-secure", 9094),
            ("registry", REGISTRY_PORT),
            ("prometheus", PROMETHEUS_PORT),
            ("alertmanager", alertmanager.ALERTMANAGER_PORT),
            *zip(cluster.NODE_NAMES, cluster.BROKER_PORTS, strict=True),
        ):
            pid = self.running_pid(name)
            result[name] = pid
            if name in cluster.NODE_NAMES and pid is None and not port_taken(port):
                continue  # the cluster is opt-in (`--brokers 3`): say nothing when it is off
            if pid is not None:
                self.say(f"{name}: running (pid {pid}, port {port})")
            elif port_taken(port):
                self.say(f"{name}: not started by this stack, but port {port} is in use")
            elif (reason := _optional_skip_reason(name)) is not None:
                self.say(f"{name}: not running ({reason})")
            else:
                self.say(f"{name}: not running")
        self.say(f"stack home: {self.home}")
        return result

    # -- the secure broker (streams.stack.secure) ---------------------------------------------
    def _secure_components(self, wanted: bool) -> list[Component]:
        if not wanted:
            return []
        from streams.stack import secure

        lib, _ = ensure_artifacts(self.home, say=self.say)
        java = find_java(17, purpose="Kafka 4")
        launch = secure.secure_kafka(self.home, lib, self.log_dir, java)
        return [
            Component(
                name=secure.SECURE_NAME,
                port=launch.port,
                command=launch.command,
                cwd=launch.cwd,
                ready=launch.ready,
                ready_timeout_s=90,
                where=launch.where,
            )
        ]


def _optional_skip_reason(name: str) -> str | None:
    """Why an optional server cannot run here (None when it can, or for required servers)."""
    if name == "prometheus":
        return skip_reason()
    if name == "alertmanager":
        return alertmanager.skip_reason()
    return None
