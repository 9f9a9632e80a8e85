"""The local stack: a moto server and the local Kinesis Video endpoint, run in the background.

`state.json` in `paths.local_dir()` records what was started (pid, command line, port, log) and the
endpoints `Target` reads. Only processes whose pid AND command line match the record are ever
stopped, so a recycled pid is never killed. A damaged state file (cut short, not JSON) is reported
in one warning and rebuilt from the servers that really run (`recover`): a server of this
KINASE_HOME is a process with a server's command line whose output goes to that server's log here.

`ensure` brings the stack back after a crash: a server that is healthy is left alone, one that is
down is started again on its recorded port (so the endpoints other processes know stay valid).
Both servers keep their state in memory only: a restarted one is empty, and the environments
deployed into it (`deployed_envs`, from the outputs each `kinase deploy --local` records) must be
deployed again.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from kinase_cli import paths
from kinase_cli.aws.target import LocalEndpoints
from kinase_cli.runners import proc
from kinase_cli.ui.errors import KinaseError

HOST = "localhost"  # never 127.0.0.1: moto then misreads the bucket in cdk's template URLs
DEFAULT_PORT = 4566
DEFAULT_KVS_PORT = 4567
START_TIMEOUT_S = 60
STOP_TIMEOUT_S = 10


@dataclass(frozen=True)
class Server:
    name: str  # key in state.json
    module: str
    health_path: str
    host_flag: str
    port_flag: str

    def argv(self, port: int) -> list[str]:
        return [sys.executable, "-m", self.module, self.host_flag, HOST, self.port_flag, str(port)]

    def log_file(self) -> Path:
        return paths.local_dir() / f"{self.name}.log"


MOTO = Server("moto", "kinase_cli.local.moto_server", "/moto-api/", "-H", "-p")
KVS = Server("kvs", "kinase_cli.local.kvs_server", "/health", "--host", "--port")
SERVERS = (MOTO, KVS)


def state_file() -> Path:
    return LocalEndpoints.state_file()


def load() -> dict | None:
    """The recorded state; None when nothing is recorded. A damaged record is rebuilt by `recover`."""
    try:
        state = json.loads(state_file().read_text())
        if isinstance(state, dict):
            return state
    except FileNotFoundError:
        return None
    except ValueError:
        pass
    return recover()


def damaged(path: Path, found: str) -> None:
    """The one warning line for a state file that cannot be read, and what was found running instead."""
    from kinase_cli.ui import console
    from kinase_cli.ui.text import join

    message = f"{path} is damaged (not a readable state file); rebuilt from the processes that run: {found}"
    console.err.print(join(("warning:", "yellow"), " ", message), highlight=False, soft_wrap=True)


def recover() -> dict | None:
    """The state rebuilt from the servers of this KINASE_HOME that really run, saved; None (and no file) when none runs.

    The rebuilt state is not marked bootstrapped, so the next `local up` bootstraps cdk again (that is idempotent).
    """
    state: dict = {}
    for pid, argv, _ in processes_logging_to(paths.local_dir()):
        for server in SERVERS:
            if argv[:-1] == server.argv(0)[:-1] and argv[-1].isdigit() and server.name not in state:
                port = int(argv[-1])
                state[server.name] = {
                    "pid": pid,
                    "argv": argv,
                    "port": port,
                    "endpoint": f"http://{HOST}:{port}",
                    "log": str(server.log_file()),
                }
    found = ", ".join(f"{name} (pid {state[name]['pid']})" for name in sorted(state)) or "none"
    damaged(state_file(), found)
    if not state:
        state_file().unlink(missing_ok=True)
        return None
    if all(server.name in state for server in SERVERS):
        state["aws_endpoint"] = state[MOTO.name]["endpoint"]
        state["kinesis_video_endpoint"] = state[KVS.name]["endpoint"]
    state["bootstrapped"] = False
    save(state)
    return state


def save(state: dict) -> None:
    tmp = state_file().with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2))
    tmp.replace(state_file())


def cmdline(pid: int) -> str | None:
    """The command line of a live process (arguments joined by spaces), or None when there is none."""
    proc_dir = Path("/proc")
    if proc_dir.is_dir():
        try:
            raw = (proc_dir / str(pid) / "cmdline").read_bytes()
        except OSError:
            return None
        return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part) or None
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() or None


def processes_logging_to(directory: Path) -> list[tuple[int, list[str], Path]]:
    """(pid, argv, log file) of the live processes of this user whose output goes to a file in `directory`:
    what this KINASE_HOME started (the servers, fleet workers), whatever its records say. Linux (/proc) only."""
    found = []
    proc_dir, directory = Path("/proc"), directory.resolve()
    if not proc_dir.is_dir():
        return found
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            log = Path(os.readlink(entry / "fd" / "1"))
            raw = (entry / "cmdline").read_bytes()
        except OSError:  # gone meanwhile, or another user's
            continue
        if log.parent == directory:
            found.append((int(entry.name), [part.decode(errors="replace") for part in raw.split(b"\0") if part], log))
    return found


def environ(pid: int) -> dict[str, str]:
    """The environment a live process was started with (Linux /proc); empty when it cannot be read."""
    try:
        raw = (Path("/proc") / str(pid) / "environ").read_bytes()
    except OSError:
        return {}
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {key: value for key, _, value in pairs}


def is_ours(record: dict) -> bool:
    """Alive, and still the process we started (same command line)."""
    return cmdline(record["pid"]) == " ".join(record["argv"])


def healthy(url: str, timeout: float = 2.0) -> bool:
    import urllib.request  # here, not at the top: it imports http.client and the email package, a tenth of `kinase --help`

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:  # urllib.error.URLError included
        return False


def server_status(state: dict) -> dict[str, dict]:
    result = {}
    for server in SERVERS:
        record = state.get(server.name)
        if not record:
            continue
        running = is_ours(record)
        result[server.name] = {
            **{k: record[k] for k in ("pid", "port", "endpoint", "log")},
            "running": running,
            "healthy": running and healthy(record["endpoint"] + server.health_path),
        }
    return result


def running_state() -> dict | None:
    """The recorded state when every server is running and healthy, else None."""
    state = load()
    if not state:
        return None
    status = server_status(state)
    if len(status) == len(SERVERS) and all(s["healthy"] for s in status.values()):
        return state
    return None


def port_free(port: int) -> bool:
    """Nothing listens on `port`. Sockets of a server stopped a moment ago linger in TIME_WAIT; they
    must not count (the server binds with SO_REUSEADDR too), so: no answer to a connect, and a bind
    with SO_REUSEADDR succeeds."""
    with socket.socket() as probe:
        probe.settimeout(1.0)
        if probe.connect_ex((HOST, port)) == 0:
            return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _start(server: Server, port: int) -> dict:
    argv = server.argv(port)
    child = proc.start_background(argv, log_file=server.log_file(), env={**os.environ, "PYTHONUNBUFFERED": "1"})
    return {"pid": child.pid, "argv": argv, "port": port, "endpoint": f"http://{HOST}:{port}", "log": str(server.log_file())}


def _wait_healthy(server: Server, record: dict) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if healthy(record["endpoint"] + server.health_path):
            return
        if not is_ours(record):
            break
        time.sleep(0.2)
    tail = _log_tail(Path(record["log"]))
    raise KinaseError(f"the {server.name} server did not start on port {record['port']}: {tail}", f"see {record['log']}")


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])[-400:]
    except FileNotFoundError:
        return "(no log)"


def check_ports(port: int, kvs_port: int) -> None:
    for name, p in (("--port", port), ("--kvs-port", kvs_port)):
        if not port_free(p):
            raise KinaseError(f"port {p} on {HOST} is already in use", f"pick another with {name}")


def deployed_envs() -> list[str]:
    """Environments that `kinase deploy --local` deployed and `kinase destroy --local` has not removed."""
    return sorted(p.parent.name for p in paths.local_dir().glob("*/outputs.json"))


def forget_deployments() -> list[str]:
    """After `local down` nothing is deployed any more: drop the records, so `local up` starts clean."""
    envs = deployed_envs()
    for env in envs:
        (paths.local_dir() / env / "outputs.json").unlink(missing_ok=True)
    return envs


def ensure(port: int = DEFAULT_PORT, kvs_port: int = DEFAULT_KVS_PORT) -> tuple[dict, list[str]]:
    """Start whichever server is not running and healthy; returns the state and the names of the servers started.

    With both down (or no record), this is a fresh start on `port` and `kvs_port`. Otherwise the
    healthy one keeps running and the other is restarted on its recorded port; a recorded process
    that is ours but unhealthy is stopped first. A restarted moto is not bootstrapped.
    """
    state = load() or {}
    status = server_status(state) if state else {}
    keep = {name for name, s in status.items() if s["healthy"]}
    if not keep:
        stop(state)
        return start(port, kvs_port), [s.name for s in SERVERS]
    ports = {MOTO.name: port, KVS.name: kvs_port}
    todo = [server for server in SERVERS if server.name not in keep]
    for server in todo:
        record = state.get(server.name)
        if record and is_ours(record):
            _terminate(record["pid"])
        if record:
            ports[server.name] = record["port"]
    for server in todo:
        if not port_free(ports[server.name]):
            raise KinaseError(
                f"port {ports[server.name]} on {HOST} is already in use", "stop what uses it, or `kinase local down` and up again"
            )
    try:
        for server in todo:
            state[server.name] = _start(server, ports[server.name])
            save({**state, "starting": True})
        for server in todo:
            _wait_healthy(server, state[server.name])
    except BaseException:
        for server in todo:  # only what this call started: the healthy server keeps running
            record = state.get(server.name)
            if record and is_ours(record):
                _terminate(record["pid"])
        raise
    if MOTO in todo:
        state["bootstrapped"] = False
    state.pop("starting", None)
    state["aws_endpoint"] = state["moto"]["endpoint"]
    state["kinesis_video_endpoint"] = state["kvs"]["endpoint"]
    save(state)
    return state, [s.name for s in todo]


def start(port: int = DEFAULT_PORT, kvs_port: int = DEFAULT_KVS_PORT) -> dict:
    """Start both servers and record them; stops what it started if either fails."""
    check_ports(port, kvs_port)
    state: dict = {"started_at": time.time()}
    try:
        for server, p in ((MOTO, port), (KVS, kvs_port)):
            state[server.name] = _start(server, p)
            save({**state, "starting": True})
        for server in SERVERS:
            _wait_healthy(server, state[server.name])
    except BaseException:
        stop(state)
        raise
    state["aws_endpoint"] = state["moto"]["endpoint"]
    state["kinesis_video_endpoint"] = state["kvs"]["endpoint"]
    save(state)
    return state


def stop(state: dict | None = None) -> list[str]:
    """Stop the recorded servers that are still ours and forget the state; returns what was stopped."""
    state = load() if state is None else state
    stopped = []
    for server in SERVERS:
        record = (state or {}).get(server.name)
        if record and is_ours(record):
            _terminate(record["pid"])
            stopped.append(f"{server.name} (pid {record['pid']})")
    state_file().unlink(missing_ok=True)
    return stopped


def _terminate(pid: int) -> None:
    # start_background made each server the leader of its own process group.
    for sig, wait in ((signal.SIGTERM, STOP_TIMEOUT_S), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if cmdline(pid) is None or _reaped(pid):
                return
            time.sleep(0.1)


def _reaped(pid: int) -> bool:
    """Reap `pid` if it is our own exited child (when started in this same process)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False
