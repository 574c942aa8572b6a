"""A local deployment driven through the deploy/ scripts: a SuperLink, SuperNodes as separate
processes, `flwr` commands against them. The tests and deploy/compare.py use it.

Every process is started in its own session and stopped by PID: its process group and every
descendant (the SuperLink's flower-superexec starts its own session), SIGTERM first, SIGKILL
after a grace period. Use it as a context manager so that this happens also when a test fails.

Example:
    >>> with LocalFederation(Path("/tmp/fed")) as fed:  # doctest: +SKIP
    ...     fed.make_credentials(["node0", "node1"])
    ...     fed.start_superlink()
    ...     for i, name in enumerate(["node0", "node1"]):
    ...         fed.register(name)
    ...         fed.start_supernode(name, f"partition-id={i} num-partitions=2")
    ...     fed.wait_online(2)
    ...     run_id = fed.flwr_run({"num-server-rounds": 2})
    ...     fed.wait_run(run_id, timeout=600)
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
CONNECTION = "fedsnn-local"


class DeploymentError(RuntimeError):
    """A process or command of the local deployment did not do what was expected."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def toml_value(value: Any) -> str:
    """A run-config value as `flwr run --run-config` wants it (TOML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return repr(value)


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (Linux /proc), children first."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found


def stop_process(process: subprocess.Popen[bytes], grace: float = 5.0,
                 sig: int = signal.SIGTERM) -> None:
    """Stop `process`, its process group and all its descendants; SIGKILL what outlives `grace`."""
    pids = [process.pid, *descendants(process.pid)]
    for pid in pids:
        for kill in (lambda p: os.killpg(p, sig), lambda p: os.kill(p, sig)):
            try:
                kill(pid)
            except (ProcessLookupError, PermissionError):
                pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
        time.sleep(0.2)
    for pid in pids:
        if _alive(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        pass


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return status != "Z"


class LocalFederation:
    """SuperLink + SuperNodes on 127.0.0.1 with TLS and node authentication, under `root`.

    `root` receives certs/, keys/, flwr-home/ (FLWR_HOME) and logs/; the ports are free ones.
    """

    def __init__(self, root: Path, *, tls: bool = True, simulation: bool = False) -> None:
        self.root = root.resolve()
        self.tls = tls and not simulation
        self.simulation = simulation
        self.fleet = f"127.0.0.1:{free_port()}"
        self.control = f"127.0.0.1:{free_port()}"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.registered: dict[str, int] = {}  # node name -> node id
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "FLWR_HOME": str(self.root / "flwr-home"),
                    "PATH": f"{REPO / '.venv' / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def __enter__(self) -> LocalFederation:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop_all()

    # -- credentials ------------------------------------------------------------------------
    def make_credentials(self, nodes: list[str]) -> None:
        """A dev CA + server certificate for localhost/127.0.0.1, and a key pair per node."""
        self._script("make-certs.sh", str(self.root / "certs"), "localhost", "127.0.0.1")
        self._script("make-node-keys.sh", str(self.root / "keys"), *nodes)

    def key(self, node: str) -> Path:
        return self.root / "keys" / node

    # -- processes --------------------------------------------------------------------------
    def start_superlink(self, database: Path | None = None) -> subprocess.Popen[bytes]:
        """Start the SuperLink (its state in `database`, else in memory) and name the connection
        `fedsnn-local` for `flwr` commands."""
        args = (["--certs", str(self.root / "certs")] if self.tls
                else ["--simulation-local-testing"] if self.simulation
                else ["--insecure-local-testing"])
        if database is not None:
            args += ["--database", str(database)]
        process = self._start("superlink", "superlink.sh", *args, "--fleet", self.fleet,
                              "--control", self.control)
        security = str(self.root / "certs" / "ca.crt") if self.tls else "--insecure"
        self._script("connection.sh", CONNECTION, self.control, security)
        self._wait_for(lambda: self._flwr("list", CONNECTION, "--format", "json",
                                          check=False).returncode == 0, 60, "SuperLink to answer")
        return process

    def start_supernode(self, name: str, node_config: str, *, key: str | None = None,
                        tls: bool | None = None, max_retries: int | None = None
                        ) -> subprocess.Popen[bytes]:
        """Start a SuperNode named `name` (its log: logs/<name>.log) with key `key or name`."""
        tls = self.tls if tls is None else tls
        args = ["--superlink", self.fleet, "--node-config", node_config, "--port", str(free_port())]
        if tls:
            args += ["--ca", str(self.root / "certs" / "ca.crt"), "--key", str(self.key(key or name))]
        else:
            args += ["--insecure-local-testing"]
        if max_retries is not None:
            args += ["--max-retries", str(max_retries)]
        return self._start(name, "supernode.sh", *args)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to a started process and everything under it (SIGKILL: no goodbye)."""
        stop_process(self.processes.pop(name), grace=5.0, sig=sig)

    def stop_all(self) -> None:
        """Stop every process this federation started (SuperNodes first), by PID."""
        for name in sorted(self.processes, key=lambda n: n == "superlink"):
            stop_process(self.processes.pop(name))

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- flwr commands ----------------------------------------------------------------------
    def register(self, node: str) -> int:
        """Register the node's public key with the SuperLink; returns its node id."""
        out = self._flwr("supernode", "register", str(self.key(node)) + ".pub", CONNECTION,
                         "--format", "json").stdout
        self.registered[node] = int(json.loads(out)["node-id"])
        return self.registered[node]

    def nodes(self) -> list[dict[str, Any]]:
        """`flwr supernode list` as records (node-id, status, ...)."""
        out = self._flwr("supernode", "list", CONNECTION, "--format", "json").stdout
        return list(json.loads(out).get("nodes", []))

    def node_status(self, node: str) -> str:
        """A registered node's status at the SuperLink: 'online', 'offline', 'registered'..."""
        wanted = str(self.registered[node])
        return next((n["status"] for n in self.nodes() if str(n["node-id"]) == wanted), "unknown")

    def wait_online(self, count: int, timeout: float = 120.0) -> None:
        """Wait until `count` SuperNodes are online."""
        self._wait_for(lambda: sum(n.get("status") == "online" for n in self.nodes()) >= count,
                       timeout, f"{count} SuperNodes online")

    def flwr_run(self, run_config: Mapping[str, Any], *, num_supernodes: int = 2) -> int:
        """Submit the app in this repository with `run_config` overrides; returns the run id.
        In simulation mode the engine runs `num_supernodes` nodes with one CPU each."""
        overrides = " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())
        extra = (["--federation-config",
                  f"num-supernodes={num_supernodes} client-resources-num-cpus=1"]
                 if self.simulation else [])
        out = self._flwr("run", str(REPO), CONNECTION, "--run-config", overrides, *extra,
                         "--format", "json").stdout
        return int(json.loads(out)["run-id"])

    def run_log(self, run_id: int) -> str:
        """What `flwr log RUN_ID --show` prints: the run's ServerApp log as the SuperLink has it."""
        return self._flwr("log", str(run_id), CONNECTION, "--show", check=False).stdout

    def flwr_run_streamed(self, run_config: Mapping[str, Any], timeout: float = 600.0
                          ) -> subprocess.CompletedProcess[str]:
        """`flwr run --stream` to the end of the run: its exit status and what it printed."""
        overrides = " ".join(f"{k}={toml_value(v)}" for k, v in run_config.items())
        return subprocess.run(["flwr", "run", str(REPO), CONNECTION, "--stream", "--run-config",
                               overrides], env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)

    def stop_run(self, run_id: int) -> None:
        """Ask the SuperLink to stop a run (no error if it already finished)."""
        self._flwr("stop", str(run_id), CONNECTION, check=False)

    @contextmanager
    def stopping(self, run_id: int) -> Iterator[None]:
        """Leaving the block (a timeout, a failed check) stops the run unless it has finished, so
        that no run outlives its test."""
        try:
            yield
        finally:
            if not self.run_status(run_id).startswith("finished"):
                self.stop_run(run_id)

    def run_status(self, run_id: int) -> str:
        """The run's status, e.g. 'running' or 'finished:completed'."""
        out = self._flwr("list", CONNECTION, "--run-id", str(run_id), "--format", "json").stdout
        (run,) = json.loads(out)["runs"]
        return str(run["status"])

    def wait_run(self, run_id: int, timeout: float) -> str:
        """Wait until the run finishes (any 'finished:*' status) and return that status."""
        status = ""

        def finished() -> bool:
            nonlocal status
            status = self.run_status(run_id)
            return status.startswith("finished")

        self._wait_for(finished, timeout, f"run {run_id} to finish", interval=2.0)
        return status

    # -- plumbing ---------------------------------------------------------------------------
    def _start(self, name: str, script: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"{name}.log").open("ab") as log:
            process = subprocess.Popen(["bash", str(DEPLOY / script), *args], env=self.env,
                                       stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True, cwd=self.root)
        self.processes[name] = process
        return process

    def _script(self, script: str, *args: str) -> None:
        subprocess.run(["bash", str(DEPLOY / script), *args], env=self.env, check=True,
                       capture_output=True, timeout=60)

    def _flwr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(["flwr", *args], env=self.env, capture_output=True, text=True,
                                timeout=120, cwd=REPO)
        if check and result.returncode != 0:
            raise DeploymentError(f"flwr {' '.join(args[:2])} failed: "
                                  f"{(result.stdout + result.stderr).strip()[-500:]}")
        return result

    @staticmethod
    def _wait_for(condition: Any, timeout: float, what: str, interval: float = 1.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(interval)
        raise DeploymentError(f"timed out after {timeout:g} s waiting for {what}")
