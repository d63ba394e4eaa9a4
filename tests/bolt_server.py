"""A live Bolt server for tests and benchmarks: ArcadeDB from its PyPI wheel.

No Neo4j server can be installed here, so the Neo4j store is tested over real Bolt
against ArcadeDB, which speaks the protocol and runs Cypher (docs in
``shared/NEO4J-TESTING.md``). The wheel bundles its own Java runtime and jars; the
server runs as a child process with its data, config and logs in a temporary root.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import neo4j

DATABASE = "neo4j"
USER = "root"
START_TIMEOUT_S = 90.0
JVM_FLAGS = [
    "-Xmx2g",
    "--add-modules=jdk.incubator.vector",
    "--enable-native-access=ALL-UNNAMED",
    "--add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED",
    "--add-opens=java.base/java.nio.channels.spi=ALL-UNNAMED",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
]
MAIN_CLASS = "com.arcadedb.server.ArcadeDBServer"


class BoltServerError(RuntimeError):
    """The test server could not be started; the message ends with its log tail."""


def arcadedb_package_dir() -> Path:
    """Where the arcadedb-embedded wheel is installed (it holds jre/ and jars/)."""
    spec = importlib.util.find_spec("arcadedb_embedded")
    if spec is None or spec.origin is None:
        raise BoltServerError(
            "the arcadedb-embedded package is not installed; "
            "run: pip install 'arcadedb-embedded==26.10.2.post1'"
        )
    return Path(spec.origin).parent


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _tail(path: Path, lines: int = 40) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.splitlines()[-lines:])


@dataclass
class BoltServer:
    """One ArcadeDB server process with Bolt on loopback. ``start()``, then ``stop()``."""

    password: str = "riskgraph-test"
    heap: str = "-Xmx2g"
    root: Path | None = None
    http_port: int = 0
    bolt_port: int = 0
    _proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _own_root: bool = field(default=False, repr=False)

    @property
    def uri(self) -> str:
        return f"bolt://127.0.0.1:{self.bolt_port}"

    @property
    def user(self) -> str:
        return USER

    @property
    def database(self) -> str:
        return DATABASE

    @property
    def log_path(self) -> Path:
        assert self.root is not None
        return self.root / "server.log"

    def command(self) -> list[str]:
        pkg = arcadedb_package_dir()
        java = pkg / "jre" / "bin" / "java"
        if not java.exists():
            raise BoltServerError(f"no bundled Java runtime at {java}; reinstall arcadedb-embedded")
        assert self.root is not None
        props = {
            "arcadedb.polyglotEngineEnabled": "false",
            "arcadedb.server.rootPath": self.root,
            "arcadedb.server.databaseDirectory": self.root / "databases",
            "arcadedb.server.configDirectory": self.root / "config",
            "arcadedb.server.logsDirectory": self.root / "logs",
            "arcadedb.server.rootPassword": self.password,
            "arcadedb.server.mode": "development",
            "arcadedb.server.httpIncomingHost": "127.0.0.1",
            "arcadedb.server.httpIncomingPort": self.http_port,
            "arcadedb.server.defaultDatabases": f"{DATABASE}[{USER}]",
            "arcadedb.server.plugins": "Bolt:com.arcadedb.bolt.BoltProtocolPlugin",
            "arcadedb.bolt.host": "127.0.0.1",
            "arcadedb.bolt.port": self.bolt_port,
            "arcadedb.bolt.defaultDatabase": DATABASE,
        }
        flags = [self.heap if f.startswith("-Xmx") else f for f in JVM_FLAGS]
        return [
            str(java),
            *flags,
            *(f"-D{k}={v}" for k, v in props.items()),
            "-cp",
            str(pkg / "jars" / "*"),
            MAIN_CLASS,
        ]

    def start(self, timeout_s: float = START_TIMEOUT_S) -> BoltServer:
        if self._proc is not None:
            return self
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="riskgraph-bolt-"))
            self._own_root = True
        for sub in ("databases", "config", "logs"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.http_port = self.http_port or free_port()
        self.bolt_port = self.bolt_port or free_port()
        cmd = self.command()
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                cmd, cwd=self.root, stdout=log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            self._wait_ready(timeout_s)
        except BaseException:
            self.stop(remove=False)
            raise
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + timeout_s
        last: Exception | None = None
        while time.monotonic() < deadline:
            code = self._proc.poll()
            if code is not None:
                raise BoltServerError(
                    f"ArcadeDB exited with code {code} before Bolt answered; "
                    f"log {self.log_path}:\n{_tail(self.log_path)}"
                )
            try:
                with neo4j.GraphDatabase.driver(
                    self.uri, auth=(USER, self.password), connection_timeout=2.0
                ) as driver, driver.session(database=DATABASE) as session:
                    session.run("RETURN 1 AS one").consume()
                return
            except Exception as exc:  # not listening yet, or still opening the database
                last = exc
                time.sleep(0.25)
        raise BoltServerError(
            f"ArcadeDB did not answer RETURN 1 on {self.uri} within {timeout_s:.0f} s "
            f"(last error: {last!r}); log {self.log_path}:\n{_tail(self.log_path)}"
        )

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines) if self.root is not None else "(not started)"

    def stop(self, remove: bool = True, grace_s: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=grace_s)
        if remove and self._own_root and self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would. ``start()`` brings it
        back on the same ports over the same data."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)

    def __enter__(self) -> BoltServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
