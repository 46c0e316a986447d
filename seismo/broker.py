"""Embedded single-node Apache Kafka (KRaft) broker.

seismo runs a *real* Kafka broker -- the official ``kafka_2.13`` jars, resolved once from
Maven Central through ``deploy/kafka/pom.xml`` into a per-user cache -- as a child JVM
process. One node is both broker and KRaft controller; its data lives in ``data_dir`` so
topics and committed offsets survive restarts.

Typical use::

    with EmbeddedKafka(Path(".seismo/kafka")) as kafka:
        run_pipeline(bootstrap=kafka.bootstrap)

Layout of ``data_dir``::

    server.properties   rewritten on every start (ports may change)
    cluster.id          KRaft cluster id, generated on first start
    broker.lock         flock + pid/bootstrap of the owner (held by python *and* the JVM)
    kraft/              Kafka's log.dirs (metadata log, topic partitions)
    logs/server.log     broker log (log4j2, see deploy/kafka/log4j2.yaml)
    logs/jvm.out        the JVM's own stdout/stderr (crashes before logging is up)
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from seismo.errors import BrokerError
from seismo.ports import port_in_use

__all__ = [
    "KAFKA_VERSION",
    "EmbeddedKafka",
    "check_java",
    "default_cache_dir",
    "ensure_jars",
    "repo_root",
]

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
MIN_JAVA_MAJOR = 17

_MAIN_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"
_LOCK_NAME = "broker.lock"
_CLUSTER_ID_NAME = "cluster.id"
_TAIL_LINES = 30
_OFFSETS_PARTITIONS = 4
_HEAP_RE = re.compile(r"[1-9][0-9]*[kKmMgG]?")

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------
# locations


def repo_root() -> Path:
    """The repository checkout this module lives in (holds ``deploy/kafka``)."""
    return Path(__file__).resolve().parents[1]


def default_cache_dir() -> Path:
    """``$SEISMO_CACHE_DIR``, else ``$XDG_CACHE_HOME/seismo``, else ``~/.cache/seismo``."""
    explicit = os.environ.get("SEISMO_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "seismo"
    return Path.home() / ".cache" / "seismo"


def _kafka_dir() -> Path:
    return repo_root() / "deploy" / "kafka"


def _say(message: str, progress: Progress | None) -> None:
    """One line for the user: through ``progress`` when a command shows it, else the log."""
    if progress is None:
        log.info("%s", message)
    else:
        log.debug("%s", message)
        progress(message)


# --------------------------------------------------------------------------------------
# java


def _find_java() -> str | None:
    """``$JAVA_HOME/bin/java`` if it exists, else ``java`` on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("java")


_JAVA_VERSION_RE = re.compile(r'version "([^"]+)"')


def _java_major(version: str) -> int:
    """``"1.8.0_392"`` -> 8, ``"17.0.15"`` -> 17, ``"21"`` -> 21, ``"22-ea"`` -> 22."""
    parts = re.split(r"[._+-]", version)
    try:
        if parts[0] == "1" and len(parts) > 1:
            return int(parts[1])
        return int(parts[0])
    except ValueError as exc:
        raise BrokerError(f"cannot parse Java version {version!r}") from exc


def _java_or_raise() -> tuple[str, str]:
    java = _find_java()
    if java is None:
        raise BrokerError(
            f"Java {MIN_JAVA_MAJOR}+ is required to run the embedded Kafka broker, but no "
            "`java` executable was found on PATH (or in $JAVA_HOME/bin). Install a JDK/JRE "
            f"{MIN_JAVA_MAJOR} or newer (e.g. `apt install openjdk-17-jre-headless`, "
            "`brew install openjdk@17`) or point JAVA_HOME at one -- or run seismo against an "
            "external Kafka by setting its bootstrap servers instead."
        )
    try:
        out = subprocess.run(
            [java, "-version"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BrokerError(f"could not run `{java} -version`: {exc}") from exc
    text = (out.stderr or "") + (out.stdout or "")
    match = _JAVA_VERSION_RE.search(text)
    if out.returncode != 0 or match is None:
        raise BrokerError(
            f"`{java} -version` failed (exit {out.returncode}); is this a working Java "
            f"installation?\n{text.strip()}"
        )
    version = match.group(1)
    if _java_major(version) < MIN_JAVA_MAJOR:
        raise BrokerError(
            f"Kafka {KAFKA_VERSION} needs Java {MIN_JAVA_MAJOR} or newer, but {java} is "
            f"Java {version}. Install a newer JDK/JRE and put it first on PATH or set JAVA_HOME."
        )
    return java, version


def check_java() -> str:
    """Return the version of the ``java`` that would run the broker.

    Raises :class:`BrokerError` with an actionable message when Java is missing, broken
    or older than 17.
    """
    return _java_or_raise()[1]


# --------------------------------------------------------------------------------------
# jars


def _tail_text(text: str, lines: int = _TAIL_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _run_tool(cmd: list[str], timeout: float, cwd: Path | None = None) -> tuple[int, str]:
    """Run a command to its end with no input; its exit code and the tail of its output
    (stdout, then stderr). Raises what ``subprocess.run`` raises (OSError, TimeoutExpired)."""
    done = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
    )
    return done.returncode, _tail_text((done.stdout or "") + "\n" + (done.stderr or ""))


def ensure_jars(cache_dir: Path | None = None, *, progress: Progress | None = None) -> Path:
    """Return a directory holding the Kafka broker jars, resolving them on first use.

    The jars live in ``<cache>/kafka-<KAFKA_VERSION>/lib``. When that directory already
    holds the main Kafka jar it is returned immediately; otherwise Maven copies the runtime
    dependencies of ``deploy/kafka/pom.xml`` into a temporary sibling which is then renamed
    into place, so a half-finished download is never mistaken for a complete one.
    """
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    base = cache / f"kafka-{KAFKA_VERSION}"
    lib = base / "lib"
    if (lib / _MAIN_JAR).is_file():
        log.debug("Kafka jars cached in %s", lib)
        return lib

    pom = _kafka_dir() / "pom.xml"
    if not pom.is_file():
        raise BrokerError(f"cannot resolve Kafka jars: {pom} is missing from the checkout")
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            f"the Kafka {KAFKA_VERSION} jars are not cached yet ({lib}) and Maven (`mvn`) is "
            "not on PATH to fetch them. Install Maven 3.6+ (e.g. `apt install maven`, "
            "`brew install maven`) and retry; it is only needed once. Alternatively copy the "
            f"jars of a Kafka {KAFKA_VERSION} distribution (its libs/ folder) into {lib}."
        )

    base.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="lib.partial-", dir=base))
    _say("resolving Kafka jars from Maven Central (first run only)…", progress)
    started = time.monotonic()
    cmd = [
        mvn,
        "-q",
        "-B",
        "-f",
        str(pom),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={tmp}",
    ]
    try:
        try:
            code, output = _run_tool(cmd, timeout=1800)
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"`{' '.join(cmd)}` did not finish within 30 minutes") from exc
        except OSError as exc:
            raise BrokerError(f"could not run Maven ({mvn}): {exc}") from exc
        if code != 0:
            raise BrokerError(
                f"Maven failed to resolve the Kafka jars (exit {code}). Check network "
                f"access to Maven Central (or your ~/.m2/settings.xml mirror).\n"
                f"command: {' '.join(cmd)}\n{output}"
            )
        if not (tmp / _MAIN_JAR).is_file():
            raise BrokerError(
                f"Maven finished but {_MAIN_JAR} is not among the copied jars in {tmp}"
            )
        try:
            tmp.rename(lib)
        except OSError as exc:
            # Someone else finished first (ENOTEMPTY/EEXIST): theirs is as good as ours.
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (lib / _MAIN_JAR).is_file():
                raise BrokerError(f"could not move Kafka jars into {lib}: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    count = sum(1 for _ in lib.glob("*.jar"))
    _say(f"Kafka jars ready: {count} jars in {lib} ({time.monotonic() - started:.1f}s)", progress)
    return lib


# --------------------------------------------------------------------------------------
# helpers for the broker


# the ports free_port handed out in this process: whoever took one binds it later, and
# until then the OS may pick the same port again for the next caller
_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on now (the OS picks it), and not one this process handed
    out before (two servers started a moment apart must not both be given one port)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port: int = sock.getsockname()[1]
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port


def _new_cluster_id() -> str:
    """22-char base64url id, like Kafka's ``Uuid.randomUuid()`` (never starts with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode("ascii").rstrip("=")
        if not text.startswith("-"):
            return text


def _read_tail(path: Path, lines: int = _TAIL_LINES) -> list[str]:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _java_string_hash(text: str) -> int:
    """``java.lang.String.hashCode`` (over UTF-16 code units), as a signed 32-bit int."""
    data = text.encode("utf-16-be")
    h = 0
    for i in range(0, len(data), 2):
        h = (31 * h + ((data[i] << 8) | data[i + 1])) & 0xFFFFFFFF
    return h - (1 << 32) if h >= (1 << 31) else h


def _offsets_partition(group_id: str, partitions: int = _OFFSETS_PARTITIONS) -> int:
    """The ``__consumer_offsets`` partition Kafka assigns to ``group_id``."""
    h = _java_string_hash(group_id)
    return (0 if h == -(1 << 31) else abs(h)) % partitions


def _probe_groups(partitions: int = _OFFSETS_PARTITIONS) -> list[str]:
    """Group ids whose coordinators together cover every ``__consumer_offsets`` partition."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        name = f"seismo-broker-probe-{i}"
        found.setdefault(_offsets_partition(name, partitions), name)
        i += 1
    return [found[p] for p in sorted(found)]


async def _probe(bootstrap: str, timeout: float) -> bool:
    """Real Kafka round trips proving the broker is usable, not merely listening.

    Metadata must list a broker, and for groups on every ``__consumer_offsets`` partition
    FindCoordinator and OffsetFetch must succeed -- i.e. the offsets topic exists (first
    start) and committed offsets are loaded (restart), so consumers and admin offset
    queries work right away. (aiokafka's admin ``list_consumer_group_offsets`` silently
    returns ``{}`` while the coordinator is still loading, hence this stricter check.)
    """
    from aiokafka.client import AIOKafkaClient
    from aiokafka.protocol.commit import OffsetFetchRequest
    from aiokafka.protocol.coordination import FindCoordinatorRequest

    client = AIOKafkaClient(
        bootstrap_servers=bootstrap,
        client_id="seismo-broker-probe",
        request_timeout_ms=max(1000, int(timeout * 1000)),
    )
    try:
        await asyncio.wait_for(client.bootstrap(), timeout)
        if not client.cluster.brokers():
            return False
        node_id = client.get_random_node()
        for group in _probe_groups():
            found = await asyncio.wait_for(
                client.send(node_id, FindCoordinatorRequest(group, 0)), timeout
            )
            if found.error_code:
                log.debug("FindCoordinator(%s) -> error %s", group, found.error_code)
                return False
            fetched = await asyncio.wait_for(
                client.send(found.coordinator_id, OffsetFetchRequest(group, None)), timeout
            )
            error = getattr(fetched, "error_code", 0)
            if error:
                log.debug("OffsetFetch(%s) -> error %s", group, error)
                return False
        return True
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), timeout)


def _probe_sync(bootstrap: str, timeout: float) -> bool:
    """Run :func:`_probe` on a private event loop in a worker thread.

    A worker thread keeps this usable from code that already runs an event loop.
    """
    result: list[bool] = []

    def runner() -> None:
        try:
            result.append(asyncio.run(_probe(bootstrap, timeout)))
        except Exception as exc:  # not ready yet: connection refused, timeouts, ...
            log.debug("broker probe failed: %r", exc)
            result.append(False)

    worker = threading.Thread(target=runner, name="seismo-broker-probe", daemon=True)
    worker.start()
    worker.join(timeout * 3 + 1)
    return bool(result and result[0])


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


_LIVE: weakref.WeakSet[EmbeddedKafka] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for broker in list(_LIVE):
        with contextlib.suppress(Exception):
            broker.stop(timeout=15.0)


# --------------------------------------------------------------------------------------
# the broker


class EmbeddedKafka:
    """A single-node Kafka broker+controller (KRaft) running as a child JVM."""

    def __init__(
        self,
        data_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 9092,
        controller_port: int | None = None,
        heap: str = "512m",
        cache_dir: Path | None = None,
        log_to_console: bool = False,
        progress: Progress | None = None,
        node_id: int = 1,
        quorum: str | None = None,
        cluster_id: str | None = None,
        replication: int = 1,
    ) -> None:
        """One node alone, or (``node_id``, ``quorum``: the controller.quorum.voters of every
        node, ``cluster_id`` shared, ``replication`` of the internal topics) one node of a
        cluster: see :class:`KafkaCluster`."""
        self.data_dir = Path(data_dir).expanduser().resolve()
        self.node_id = node_id
        self.quorum = quorum
        self.given_cluster_id = cluster_id
        self.replication = replication
        self.host = host
        self.port = port if port else free_port(host)
        self.controller_port = controller_port if controller_port else free_port(host)
        if self.controller_port == self.port:
            self.controller_port = free_port(host)
        self.heap = heap
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.log_to_console = log_to_console
        self._progress = progress
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None
        self._jvm_out: IO[bytes] | None = None
        self._returncode: int | None = None
        self._state_lock = threading.RLock()

    # -- properties -----------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``host:port`` for Kafka clients."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """True while the broker JVM is alive."""
        proc = self._proc
        return proc is not None and proc.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the broker JVM, if started."""
        return self._proc.pid if self._proc is not None else None

    @property
    def log_file(self) -> Path:
        return self.data_dir / "logs" / "server.log"

    @property
    def kraft_dir(self) -> Path:
        return self.data_dir / "kraft"

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"EmbeddedKafka({self.bootstrap}, data_dir={str(self.data_dir)!r}, {state})"

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = 90.0) -> None:
        """Start the broker and block until it serves Kafka requests.

        Raises :class:`BrokerError` when Java/jars are unavailable, the data dir is used by
        another broker, the port is taken, the JVM exits, or it is not ready in ``timeout``.
        """
        with self._state_lock:
            if self.running:
                raise BrokerError(f"broker already running on {self.bootstrap}")
            started = time.monotonic()
            if not _HEAP_RE.fullmatch(self.heap):
                raise BrokerError(
                    f"invalid broker heap size {self.heap!r}; use a JVM size like '512m' or '2g'"
                )
            java, java_version = _java_or_raise()
            log.debug("using %s (Java %s)", java, java_version)
            lib = ensure_jars(self.cache_dir, progress=self._progress)

            self.data_dir.mkdir(parents=True, exist_ok=True)
            (self.data_dir / "logs").mkdir(exist_ok=True)
            self._acquire_lock()
            try:
                self._check_ports()
                props = self._write_properties()
                self._format_if_needed(java, lib, props)
                self._spawn(java, lib, props)
                self._wait_ready(started, timeout)
            except BaseException:
                self._abort()
                raise
            _LIVE.add(self)
            self._say(f"broker ready on {self.bootstrap} in {time.monotonic() - started:.1f}s")

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the broker (controlled shutdown), SIGKILL after ``timeout``. Idempotent."""
        with self._state_lock:
            proc = self._proc
            if proc is not None and proc.poll() is None:
                self._say(f"stopping Kafka broker on {self.bootstrap} (pid {proc.pid})")
                began = time.monotonic()
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    log.warning(
                        "Kafka broker did not stop within %.0fs; killing pid %d", timeout, proc.pid
                    )
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.pid, signal.SIGKILL)
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait()
                # The JVM exits with 128+SIGTERM after Kafka's shutdown hook completes.
                clean = proc.returncode in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
                how = "cleanly" if clean else f"(exit {proc.returncode})"
                self._say(f"Kafka broker stopped {how} in {time.monotonic() - began:.1f}s")
            if proc is not None:
                self._returncode = proc.returncode
            self._proc = None
            _LIVE.discard(self)
            self._close_jvm_out()
            self._release_lock()

    def wait(self) -> int:
        """Block until the broker JVM exits; return its exit code."""
        proc = self._proc
        if proc is None:
            if self._returncode is not None:
                return self._returncode
            raise BrokerError("broker was never started")
        code = proc.wait()
        with self._state_lock:
            if self._proc is proc:
                self.stop()
        return code

    def __enter__(self) -> EmbeddedKafka:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- internals ------------------------------------------------------------------

    def _say(self, message: str) -> None:
        _say(message, self._progress)

    def _lock_path(self) -> Path:
        return self.data_dir / _LOCK_NAME

    def _acquire_lock(self) -> None:
        path = self._lock_path()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BrokerError(self._in_use_message(path)) from None
        except BaseException:
            os.close(fd)
            raise
        self._lock_fd = fd
        self._write_lock_info(broker_pid=None)

    def _in_use_message(self, path: Path) -> str:
        info: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8") or "{}")
            if isinstance(loaded, dict):
                info = loaded
        owner, broker = info.get("owner_pid"), info.get("broker_pid")
        base = f"data dir {self.data_dir} is already in use by another Kafka broker"
        if isinstance(owner, int) and isinstance(broker, int) and not _pid_alive(owner):
            return (
                f"{base}: broker JVM pid {broker} ({info.get('bootstrap')}) outlived the seismo "
                f"process (pid {owner}) that started it. Stop it with `kill {broker}` "
                "(Kafka shuts down cleanly on SIGTERM) and retry."
            )
        details = ", ".join(
            f"{label} {value}"
            for label, value in (
                ("owner pid", owner),
                ("broker pid", broker),
                ("bootstrap", info.get("bootstrap")),
            )
            if value is not None
        )
        suffix = f" ({details})" if details else ""
        return f"{base}{suffix}. Stop that broker first, or use a different data dir."

    def _write_lock_info(self, *, broker_pid: int | None) -> None:
        if self._lock_fd is None:
            return
        info = {
            "owner_pid": os.getpid(),
            "broker_pid": broker_pid,
            "bootstrap": self.bootstrap,
            "controller": f"{self.host}:{self.controller_port}",
        }
        data = (json.dumps(info) + "\n").encode("utf-8")
        os.ftruncate(self._lock_fd, 0)
        os.pwrite(self._lock_fd, data, 0)

    def _release_lock(self) -> None:
        fd = self._lock_fd
        if fd is None:
            return
        self._lock_fd = None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    def _check_ports(self) -> None:
        for what, port in (("Kafka", self.port), ("KRaft controller", self.controller_port)):
            if port_in_use(self.host, port):
                raise BrokerError(
                    f"cannot start the embedded broker: {what} port {self.host}:{port} is already "
                    "in use (another Kafka running?). Stop it or choose another port "
                    "(port=0 picks a free one)."
                )

    def _cluster_id(self) -> str:
        path = self.data_dir / _CLUSTER_ID_NAME
        if self.given_cluster_id:
            path.write_text(self.given_cluster_id + "\n", encoding="utf-8")
            return self.given_cluster_id
        with contextlib.suppress(OSError):
            existing = path.read_text(encoding="utf-8").strip()
            if existing:
                return existing
        # meta.properties is authoritative if the storage was formatted by someone else.
        meta = self.kraft_dir / "meta.properties"
        with contextlib.suppress(OSError):
            for line in meta.read_text(encoding="utf-8").splitlines():
                key, _, value = line.partition("=")
                if key.strip() == "cluster.id" and value.strip():
                    path.write_text(value.strip() + "\n", encoding="utf-8")
                    return value.strip()
        cluster_id = _new_cluster_id()
        path.write_text(cluster_id + "\n", encoding="utf-8")
        return cluster_id

    def _write_properties(self) -> Path:
        h, p, c = self.host, self.port, self.controller_port
        rf, isr = self.replication, min(self.replication, 2)
        lines = [
            "# Written by seismo.broker on every start; edits are overwritten.",
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.quorum or f'{self.node_id}@{h}:{c}'}",
            f"listeners=PLAINTEXT://{h}:{p},CONTROLLER://{h}:{c}",
            f"advertised.listeners=PLAINTEXT://{h}:{p}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"log.dirs={self.kraft_dir}",
            "num.partitions=1",
            "default.replication.factor=1",
            "min.insync.replicas=1",
            # only seismo creates topics (seismo/kafka.py ensure_topics), with its partition
            # counts and configs: one made by a metadata request would have 1 partition
            "auto.create.topics.enable=false",
            f"offsets.topic.replication.factor={rf}",
            f"offsets.topic.num.partitions={_OFFSETS_PARTITIONS}",
            f"transaction.state.log.replication.factor={rf}",
            f"transaction.state.log.min.isr={isr}",
            f"share.coordinator.state.topic.replication.factor={rf}",
            f"share.coordinator.state.topic.min.isr={isr}",
            "group.initial.rebalance.delay.ms=0",
            "",
        ]
        path = self.data_dir / "server.properties"
        tmp = path.with_suffix(".properties.tmp")
        tmp.write_text("\n".join(lines), encoding="utf-8")
        tmp.replace(path)
        return path

    def _jvm_base(self, java: str, lib: Path) -> list[str]:
        cmd = [java, f"-Xmx{self.heap}", "-Djava.awt.headless=true"]
        log4j = _kafka_dir() / "log4j2.yaml"
        if log4j.is_file():
            cmd.append(f"-Dlog4j2.configurationFile={log4j}")
        else:
            log.warning("%s is missing; the broker will log nothing", log4j)
        cmd += [
            f"-Dkafka.logs.dir={self.data_dir / 'logs'}",
            f"-Dseismo.console.level={'INFO' if self.log_to_console else 'OFF'}",
            "-cp",
            str(lib / "*"),
        ]
        return cmd

    def _format_if_needed(self, java: str, lib: Path, props: Path) -> None:
        cluster_id = self._cluster_id()
        if (self.kraft_dir / "meta.properties").is_file():
            log.debug("storage in %s already formatted", self.kraft_dir)
            return
        self._say(f"formatting storage in {self.kraft_dir} (cluster id {cluster_id})")
        cmd = [
            *self._jvm_base(java, lib),
            "-Dseismo.console.level=OFF",
            "kafka.tools.StorageTool",
            "format",
            "-t",
            cluster_id,
            "-c",
            str(props),
        ]
        try:
            code, output = _run_tool(cmd, timeout=120, cwd=self.data_dir)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BrokerError(f"formatting Kafka storage failed: {exc}") from exc
        if code != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.kraft_dir} failed (exit {code}):\n{output}"
            )

    def _spawn(self, java: str, lib: Path, props: Path) -> None:
        cmd = [
            *self._jvm_base(java, lib),
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:InitiatingHeapOccupancyPercent=35",
            "-XX:+ExplicitGCInvokesConcurrent",
            "-XX:+ExitOnOutOfMemoryError",
            "kafka.Kafka",
            str(props),
        ]
        log.debug("spawning %s", " ".join(cmd))
        if self.log_to_console:
            stdout: int | IO[bytes] | None = None
        else:
            self._jvm_out = (self.data_dir / "logs" / "jvm.out").open("ab")
            stdout = self._jvm_out
        assert self._lock_fd is not None
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=subprocess.STDOUT if stdout is not None else None,
                cwd=self.data_dir,
                # Own session: Ctrl-C in the terminal is handled by seismo, which then stops
                # the broker cleanly instead of the JVM racing it.
                start_new_session=True,
                # The JVM inherits the data-dir lock, so the dir stays locked while an orphaned
                # broker (e.g. after python was SIGKILLed) is still alive.
                pass_fds=(self._lock_fd,),
            )
        except OSError as exc:
            raise BrokerError(f"could not start the Kafka JVM ({java}): {exc}") from exc
        self._write_lock_info(broker_pid=self._proc.pid)
        self._say(f"starting Kafka {KAFKA_VERSION} (pid {self._proc.pid}) on {self.bootstrap}")

    def _log_tail(self) -> str:
        sections: list[str] = []
        for path in (self.log_file, self.data_dir / "logs" / "jvm.out"):
            lines = _read_tail(path)
            if lines:
                sections.append(f"--- last lines of {path} ---\n" + "\n".join(lines))
        return "\n".join(sections) if sections else "(the broker wrote no log output)"

    def _wait_ready(self, started: float, timeout: float) -> None:
        proc = self._proc
        assert proc is not None
        deadline = started + timeout
        while True:
            code = proc.poll()
            if code is not None:
                raise BrokerError(
                    f"Kafka broker exited with code {code} during startup.\n{self._log_tail()}"
                )
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise BrokerError(
                    f"Kafka broker on {self.bootstrap} was not ready within {timeout:.0f}s.\n"
                    f"{self._log_tail()}"
                )
            if _tcp_open(self.host, self.port) and _probe_sync(
                self.bootstrap, min(5.0, max(1.0, remaining))
            ):
                return
            time.sleep(0.2)

    def _close_jvm_out(self) -> None:
        if self._jvm_out is not None:
            with contextlib.suppress(OSError):
                self._jvm_out.close()
            self._jvm_out = None

    def _abort(self) -> None:
        """Undo a half-finished start (process, files, lock) without raising."""
        try:
            self.stop(timeout=10.0)
        except Exception:
            log.exception("cleanup after failed start failed")
            self._close_jvm_out()
            self._release_lock()


class KafkaCluster:
    """``size`` KRaft nodes on one host from the same cached jars: each a broker and a
    controller (a controller quorum of ``size``), with its own ports and data dir
    (``data_dir/node<i>``). Internal topics are replicated ``size`` times (min ISR 2), so
    a cluster of 3 survives the loss of any one node. For tests and trials of seismo on a
    real cluster; give ``bootstrap`` to seismo as ``kafka_bootstrap``."""

    def __init__(
        self,
        data_dir: Path,
        size: int = 3,
        *,
        host: str = "127.0.0.1",
        heap: str = "256m",
        cache_dir: Path | None = None,
        progress: Progress | None = None,
    ) -> None:
        # a port and a controller port per node, all different (free_port never repeats one)
        ports = [free_port(host) for _ in range(2 * size)]
        quorum = ",".join(f"{i + 1}@{host}:{ports[2 * i + 1]}" for i in range(size))
        cluster_id = _new_cluster_id()
        self.nodes = [
            EmbeddedKafka(
                Path(data_dir) / f"node{i + 1}",
                host=host,
                port=ports[2 * i],
                controller_port=ports[2 * i + 1],
                heap=heap,
                cache_dir=cache_dir,
                progress=progress,
                node_id=i + 1,
                quorum=quorum,
                cluster_id=cluster_id,
                replication=size,
            )
            for i in range(size)
        ]

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def node(self, node_id: int) -> EmbeddedKafka:
        return self.nodes[node_id - 1]

    def start(self, timeout: float = 180.0) -> None:
        """Start every node at once (a node is ready only when a quorum of controllers
        is up) and block until each serves Kafka requests; on failure stop them all."""
        errors: list[BaseException] = []

        def start(node: EmbeddedKafka) -> None:
            try:
                node.start(timeout)
            except BaseException as exc:  # re-raised below, in the caller's thread
                errors.append(exc)

        threads = [threading.Thread(target=start, args=(n,), daemon=True) for n in self.nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.stop()
            raise errors[0]

    def stop(self, timeout: float = 30.0) -> None:
        for node in self.nodes:
            node.stop(timeout)

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
