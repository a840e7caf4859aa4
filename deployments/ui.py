"""``make ui``: a real Prefect server on 127.0.0.1, the work pool, every deployment, a worker.

    python -m deployments.ui [--port 4200]      # start (or report the running one)
    python -m deployments.ui --stop             # stop what it started

State (pids, logs, the server's database) lives in ``.coldflow/ui/``; a second
start finds the running server and only re-applies the deployments, which is
idempotent, so nothing is duplicated.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".coldflow" / "ui"
POOL = "coldflow"
QUIET = {"DO_NOT_TRACK": "1", "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}


def prefect_env(api_url: str, home: Path | None = None, **extra: str) -> dict[str, str]:
    # PWD: prefect.yaml's pull step sends workers to the folder `prefect deploy` ran in
    env = dict(os.environ, **QUIET, PREFECT_API_URL=api_url, PWD=str(ROOT), **extra)
    if home is not None:
        env["PREFECT_HOME"] = str(home)
    return env


def prefect(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess:
    """Run the prefect CLI of this environment from the project folder."""
    return subprocess.run(
        [str(Path(sys.executable).parent / "prefect"), *args],
        cwd=ROOT,
        env=env,
        check=check,
        capture_output=True,
        text=True,
    )


def start_server(port: int, home: Path, log: Path) -> subprocess.Popen:
    """``prefect server start`` on 127.0.0.1 in a session of its own (so it can be stopped)."""
    home.mkdir(parents=True, exist_ok=True)
    env = prefect_env(
        f"http://127.0.0.1:{port}/api",
        home,
        PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS=os.environ.get(
            "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", "60"
        ),
    )
    with open(log, "ab") as out:
        return subprocess.Popen(
            [
                str(Path(sys.executable).parent / "prefect"),
                "server",
                "start",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def healthy(api_url: str) -> bool:
    try:
        return httpx.get(f"{api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def wait_healthy(api_url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(api_url):
        if time.monotonic() > deadline:
            raise TimeoutError(f"Prefect server at {api_url} not healthy after {timeout:.0f} s")
        time.sleep(0.5)


def ensure_pool(env: dict[str, str]) -> None:
    """Create the process work pool unless it exists."""
    if prefect("work-pool", "inspect", POOL, env=env, check=False).returncode != 0:
        prefect("work-pool", "create", POOL, "--type", "process", env=env)


def deploy_all(env: dict[str, str]) -> str:
    """``prefect --no-prompt deploy --all`` from the project folder (idempotent)."""
    return prefect("--no-prompt", "deploy", "--all", env=env).stdout


def start_worker(env: dict[str, str], log: Path, run_once: bool = False) -> subprocess.Popen:
    args = [str(Path(sys.executable).parent / "prefect"), "worker", "start", "--pool", POOL]
    if run_once:
        args.append("--run-once")
    with open(log, "ab") as out:
        return subprocess.Popen(
            args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop(proc_pid: int) -> None:
    """Stop a process group started here; waits a little, then kills."""
    try:
        os.killpg(proc_pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    for _ in range(50):
        try:
            os.killpg(proc_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc_pid, signal.SIGKILL)


def _pid(name: str) -> int | None:
    path = STATE / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text())
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    return pid


def up(port: int) -> str:
    """Start everything (or find it running); returns the UI address."""
    STATE.mkdir(parents=True, exist_ok=True)
    port_file = STATE / "port"
    if _pid("server") and port_file.exists():
        port = int(port_file.read_text())
    api = f"http://127.0.0.1:{port}/api"
    env = prefect_env(api, STATE / "home")
    if not (_pid("server") and healthy(api)):
        server = start_server(port, STATE / "home", STATE / "server.log")
        (STATE / "server.pid").write_text(str(server.pid))
        port_file.write_text(str(port))
        wait_healthy(api)
    ensure_pool(env)
    deploy_all(env)
    if not _pid("worker"):
        worker = start_worker(env, STATE / "worker.log")
        (STATE / "worker.pid").write_text(str(worker.pid))
    return f"http://127.0.0.1:{port}"


def down() -> None:
    for name in ("worker", "server"):
        pid = _pid(name)
        if pid:
            stop(pid)
        (STATE / f"{name}.pid").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m deployments.ui", description=__doc__)
    ap.add_argument("--port", type=int, default=int(os.environ.get("COLDFLOW_UI_PORT", 4200)))
    ap.add_argument("--stop", action="store_true", help="stop the server and worker")
    args = ap.parse_args(argv)
    if args.stop:
        down()
        print("stopped the coldflow Prefect server and worker")
        return 0
    url = up(args.port)
    print(f"Prefect UI: {url}  (work pool '{POOL}', deployments from prefect.yaml, one worker)")
    print(f"logs: {STATE}/server.log, {STATE}/worker.log; stop with `make ui-stop`")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
