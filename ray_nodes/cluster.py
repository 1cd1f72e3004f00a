"""The embedded Ray head: a local Ray cluster that runs as its own processes.

``raypipe serve`` without ``--ray-address`` calls :func:`ensure_local_head`, which starts
``ray start --head`` in a new OS session (so the head outlives the control plane, and a
``kill -9`` of the server leaves runs going) or reuses the head it started earlier for the
same data directory. The head's address, ports and session are recorded in
``{data_dir}/head.json``; :meth:`LocalHead.stop` stops exactly that head's processes and
nothing else, unlike ``ray stop``, which stops every Ray cluster on the machine.

Token authentication. Since 2.59 Ray turns token authentication on for local clusters when
a token exists (``~/.ray/auth_token``, which any ``ray.init()`` creates), while a client that
connects with an explicit address does not turn it on by itself; the two sides then disagree
and the connection fails. The embedded head therefore always runs with
``RAY_AUTH_MODE=token`` and a token of its own, ``{data_dir}/auth_token`` (mode 0600, made
once and kept), and :func:`ensure_local_head` configures the calling process the same way
(``RAY_AUTH_MODE`` and ``RAY_AUTH_TOKEN_PATH`` in ``os.environ``, so child processes inherit
it). Other processes that connect use :meth:`LocalHead.client_env`. The head's GCS listens on
every interface, so leaving authentication off would let anyone on the network run code.

Getting in from outside. ``raypipe ray-env`` prints :meth:`LocalHead.shell_exports` for the
head of a data directory, so ``ray status``, ``ray list tasks`` and ``ray job submit`` work
after ``eval "$(raypipe ray-env)"``; ``raypipe dashboard`` opens the dashboard signed in (see
:mod:`ray_nodes.dashboard_login`). The dashboard listens on 127.0.0.1, on Ray's conventional
port 8265 when it is free and on another free port when it is not.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ray_nodes.errors import RayNodesError

__all__ = [
    "DASHBOARD_PORT",
    "LocalHead",
    "LocalHeadError",
    "configure_token_auth",
    "ensure_local_head",
    "find_local_head",
]

STATE_FILE = "head.json"
TOKEN_FILE = "auth_token"
LOCK_FILE = "head.lock"
START_LOG = "ray-start.log"
#: Ray's conventional dashboard port, used when it is free.
DASHBOARD_PORT = 8265
#: How long the local head keeps an idle worker process beyond its CPU count (Ray's default
#: is 1 s). A pipeline's next node often needs one more worker a second or two later, and a
#: fresh worker costs about a second here (a Python process importing pandas and the ML
#: library). The tabular benchmark's seven nodes as bare tasks took 5.9-6.1 s with Ray's
#: default and 4.4-5.0 s with this one (docs/benchmarks.md).
#: ``RAY_idle_worker_killing_time_threshold_ms`` in the environment overrides it.
IDLE_WORKER_KEEP_MS = 60_000
# Ray's unix sockets live at {temp_dir}/session_<date>_<pid>/sockets/<name>, about 75
# characters below the temp dir, and a socket path must stay under 108 bytes.
_MAX_TEMP_DIR_LEN = 30


class LocalHeadError(RayNodesError, RuntimeError):
    """The local Ray head could not be started, or its recorded state is unusable."""


@dataclass(frozen=True)
class LocalHead:
    """A Ray head started by :func:`ensure_local_head`.

    Attributes:
        address: The GCS address to pass to ``ray.init(address=...)``.
        dashboard_url: ``http://127.0.0.1:<port>``, or empty without a dashboard.
        data_dir: The directory whose head this is.
        temp_dir: Ray's temp dir (sessions, logs, sockets) for this head.
        token_path: The head's authentication token.
        session_id: The OS session of the head's processes; :meth:`stop` signals only it.
        gcs_pid: Process id of the head's GCS server, for the liveness check.
    """

    address: str
    dashboard_url: str
    data_dir: Path
    temp_dir: Path
    token_path: Path
    session_id: int
    gcs_pid: int

    def client_env(self) -> dict[str, str]:
        """Environment variables a separate process needs to connect to this head."""
        return {
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN_PATH": str(self.token_path),
            "RAY_ADDRESS": self.address,
        }

    def shell_exports(self) -> str:
        """POSIX shell lines that point Ray's own CLI (``ray status``, ``ray list tasks``,
        ``ray job submit``) at this head: ``eval "$(raypipe ray-env)"`` runs them."""
        lines = [f"export {k}={shlex.quote(v)}" for k, v in self.client_env().items()]
        # RAY_AUTH_TOKEN would win over the token file: another cluster's must not linger.
        lines.append("unset RAY_AUTH_TOKEN")
        return "\n".join(lines) + "\n"

    def alive(self) -> bool:
        """Whether the head's GCS process runs and accepts connections."""
        cmdline = _cmdline(self.gcs_pid)
        if "gcs_server" not in cmdline or str(self.temp_dir) not in cmdline:
            return False
        host, _, port = self.address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=2):
                return True
        except OSError:
            return False

    def stop(self, grace_s: float = 2.0) -> None:
        """Stop this head's processes (SIGTERM, then SIGKILL after ``grace_s``) and forget it.

        Other Ray clusters on the machine are left alone: only processes of the head's own OS
        session are signalled, and only when one of them is recognisably this head's.
        """
        _stop_session(self.session_id, self.temp_dir, grace_s)
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STATE_FILE).unlink()

    def _to_json(self) -> str:
        data = asdict(self)
        return json.dumps({k: str(v) if isinstance(v, Path) else v for k, v in data.items()})

    @classmethod
    def _from_json(cls, text: str) -> LocalHead:
        data = json.loads(text)
        for key in ("data_dir", "temp_dir", "token_path"):
            data[key] = Path(data[key])
        return cls(**data)


def ensure_local_head(
    data_dir: Path,
    *,
    num_cpus: int | None = None,
    dashboard: bool = True,
    object_store_memory: int | None = None,
    timeout_s: float = 120.0,
) -> LocalHead:
    """Start a local Ray head for ``data_dir`` as its own processes, or reuse the running one.

    Also configures this process for the head's token authentication (see the module doc),
    so ``ray.init(address=head.address)`` works here and in child processes.

    Args:
        data_dir: Where the head's state, token and start log live; created if missing.
        num_cpus: Logical CPUs of the head; default all of the machine's.
        dashboard: Start the Ray dashboard (on a free port of 127.0.0.1).
        object_store_memory: Object store size in bytes; default Ray's (30% of memory).
        timeout_s: How long ``ray start`` may take.

    Returns:
        The head; a reused head keeps the resources it was started with.

    Raises:
        LocalHeadError: ``ray start`` failed; the message holds the end of its log.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)  # it holds the head's token
    with _locked(data_dir / LOCK_FILE):
        token_path = _ensure_token(data_dir / TOKEN_FILE)
        configure_token_auth(token_path)
        state = data_dir / STATE_FILE
        if state.exists():
            try:
                head = LocalHead._from_json(state.read_text())
            except (ValueError, TypeError, KeyError):
                head = None
            if head is not None and head.alive():
                return head
            if head is not None:
                # A half-dead head (the GCS is gone, a raylet may linger): clear it out so its
                # ports and sockets are free before starting anew.
                _stop_session(head.session_id, head.temp_dir, grace_s=2.0)
            state.unlink(missing_ok=True)
        head = _start_head(
            data_dir,
            token_path,
            num_cpus=num_cpus,
            dashboard=dashboard,
            object_store_memory=object_store_memory,
            timeout_s=timeout_s,
        )
        tmp = state.with_suffix(".tmp")
        tmp.write_text(head._to_json())
        tmp.replace(state)
        return head


def find_local_head(data_dir: Path) -> LocalHead | None:
    """The running head that :func:`ensure_local_head` started for ``data_dir``, or None
    (never started, stopped, or its GCS is gone). Starts nothing and changes nothing."""
    state = Path(data_dir).resolve() / STATE_FILE
    try:
        head = LocalHead._from_json(state.read_text())
    except (OSError, ValueError, TypeError, KeyError):
        return None
    return head if head.alive() else None


def configure_token_auth(token_path: Path) -> None:
    """Make this process (and the processes it starts) use token auth with ``token_path``.

    ``RAY_AUTH_TOKEN`` is removed because it would take precedence over the file. Ray caches
    its configuration when first asked, so the cache is refreshed when ``ray`` is loaded.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(token_path)
    os.environ.pop("RAY_AUTH_TOKEN", None)
    if "ray" in sys.modules:
        try:
            from ray._raylet import (  # type: ignore[attr-defined]
                AuthenticationTokenLoader,
                Config,
            )

            Config.initialize("")
            AuthenticationTokenLoader.instance().reset_cache()
        except (ImportError, AttributeError):  # an older Ray without token auth
            pass


def _start_head(
    data_dir: Path,
    token_path: Path,
    *,
    num_cpus: int | None,
    dashboard: bool,
    object_store_memory: int | None,
    timeout_s: float,
) -> LocalHead:
    temp_dir = _temp_dir_for(data_dir)
    temp_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    port = _dashboard_port() if dashboard else 0
    try:
        return _ray_start(
            data_dir,
            token_path,
            temp_dir,
            dashboard_port=port,
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            timeout_s=timeout_s,
        )
    except _DashboardPortTaken:
        # Another process took the port between the check and Ray's bind: take any free one.
        return _ray_start(
            data_dir,
            token_path,
            temp_dir,
            dashboard_port=_free_ports(1)[0],
            num_cpus=num_cpus,
            object_store_memory=object_store_memory,
            timeout_s=timeout_s,
        )


class _DashboardPortTaken(LocalHeadError):
    """``ray start`` failed because the dashboard's port was taken meanwhile."""


def _dashboard_port() -> int:
    """Ray's conventional port when nothing listens on it here, else a free one."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", DASHBOARD_PORT))
        except OSError:
            pass
        else:
            return DASHBOARD_PORT
    return _free_ports(1)[0]


def _ray_start(
    data_dir: Path,
    token_path: Path,
    temp_dir: Path,
    *,
    dashboard_port: int,
    num_cpus: int | None,
    object_store_memory: int | None,
    timeout_s: float,
) -> LocalHead:
    """``ray start --head`` with a dashboard on ``dashboard_port`` (0: no dashboard)."""
    dashboard = dashboard_port > 0
    gcs_port, agent_port, client_port = _free_ports(3)
    args = [
        sys.executable,
        "-c",
        "from ray.scripts.scripts import main; main()",
        "start",
        "--head",
        f"--port={gcs_port}",
        f"--temp-dir={temp_dir}",
        f"--ray-client-server-port={client_port}",
        # Fixed defaults (52365, 10001) would collide with another cluster on the machine.
        f"--dashboard-agent-listen-port={agent_port}",
        "--dashboard-host=127.0.0.1",
        f"--include-dashboard={'true' if dashboard else 'false'}",
        "--disable-usage-stats",
    ]
    if dashboard:
        args.append(f"--dashboard-port={dashboard_port}")
    if num_cpus is not None:
        args.append(f"--num-cpus={num_cpus}")
    if object_store_memory is not None:
        args.append(f"--object-store-memory={object_store_memory}")
    env = dict(os.environ)
    for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        env.pop(key, None)
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_path))
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env.setdefault("RAY_idle_worker_killing_time_threshold_ms", str(IDLE_WORKER_KEEP_MS))
    log_path = data_dir / START_LOG
    with open(log_path, "wb") as log:
        # A session of its own: the head survives this process and its terminal, and stop()
        # can tell the head's processes from every other Ray on the machine.
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(data_dir),
            start_new_session=True,
        )
        try:
            rc = proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _stop_session(proc.pid, temp_dir, grace_s=2.0)
            raise LocalHeadError(
                f"ray start did not finish in {timeout_s:.0f} s; see {log_path}"
            ) from None
    if rc != 0:
        _stop_session(proc.pid, temp_dir, grace_s=2.0)
        tail = log_path.read_text(errors="replace")[-2000:]
        error = _DashboardPortTaken if f":{dashboard_port} because" in tail else LocalHeadError
        raise error(f"ray start failed (exit {rc}); end of {log_path}:\n{tail}")
    address = (temp_dir / "ray_current_cluster").read_text().strip()
    gcs_pid = next((p for p in _session_pids(proc.pid) if "gcs_server" in _cmdline(p)), 0)
    return LocalHead(
        address=address,
        dashboard_url=f"http://127.0.0.1:{dashboard_port}" if dashboard else "",
        data_dir=data_dir,
        temp_dir=temp_dir,
        token_path=token_path,
        session_id=proc.pid,
        gcs_pid=gcs_pid,
    )


def _temp_dir_for(data_dir: Path) -> Path:
    """``{data_dir}/tmp`` when short enough for unix sockets, else a stable short path."""
    local = data_dir / "tmp"
    if len(str(local)) <= _MAX_TEMP_DIR_LEN:
        return local
    digest = hashlib.sha256(str(data_dir).encode()).hexdigest()[:12]
    return Path("/tmp") / f"raypipe-{digest}"


def _ensure_token(path: Path) -> Path:
    if not path.exists() or not path.read_text().strip():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    return path


def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock: two servers on one data dir must not both start a head."""
    with open(path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        if pid <= 0 or not Path("/proc").is_dir():
            return _ps_cmdline(pid)
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace")


def _ps_cmdline(pid: int) -> str:
    """Without /proc (macOS): ask ps."""
    if pid <= 0:
        return ""
    out = subprocess.run(
        ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return out.stdout.strip()


def _session_pids(session_id: int) -> list[int]:
    """Processes of an OS session (not this process)."""
    if session_id <= 0:
        return []
    pids: list[int] = []
    if Path("/proc").is_dir():
        for entry in os.scandir("/proc"):
            if entry.name.isdigit():
                pid = int(entry.name)
                with contextlib.suppress(OSError):
                    if os.getsid(pid) == session_id and pid != os.getpid():
                        pids.append(pid)
        return pids
    out = subprocess.run(
        ["pgrep", "-s", str(session_id)], capture_output=True, text=True, check=False
    )
    return [int(p) for p in out.stdout.split() if int(p) != os.getpid()]


def _stop_session(session_id: int, temp_dir: Path, grace_s: float) -> None:
    pids = _session_pids(session_id)
    # The session id is a pid: after a reboot another session could carry it. Signal only a
    # session in which some process is recognisably this head's.
    if not any(str(temp_dir) in _cmdline(p) for p in pids):
        return
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        pids = [p for p in pids if _exists(p)]
        if not pids:
            return
        time.sleep(0.1)
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_exists(p) for p in pids):
        time.sleep(0.05)


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (our own child, not reaped yet) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return True
