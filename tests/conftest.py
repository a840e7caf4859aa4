"""One loopback S3 endpoint and one Prefect test harness per session; a clean endpoint per test."""

from __future__ import annotations

import os

# Before Prefect is imported: telemetry trips "database is locked" on SQLite.
os.environ["DO_NOT_TRACK"] = "1"
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
# Task retries without waiting between them (their count is tested, not their pace).
os.environ.setdefault("COLDFLOW_RETRY_BASE_SECONDS", "0")
# Child processes on the embedded API start their own server: give it time on a busy machine.
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "300")
# A scratch folder per test process (the suite runs in two, pytest-xdist).
os.environ.setdefault("COLDFLOW_SCRATCH", __import__("tempfile").mkdtemp(prefix="coldflow-test-"))

import contextlib
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from prefect.testing.utilities import prefect_test_harness

from loopback import LoopbackS3
from loopback.seed import PlateShape, plate_objects, seed_plates
from tasks.core.clients import reset_clients

PROJECT, BATCH = "2016_04_01_a549", "2016_04_01_Batch1"
LIVE, COLD = "live-bucket", "cold-bucket"
#: A real plate_id_full, with its space.
SPACED = ("BR00092655", "BR00092655__2017-12-10T12_48_16-Measurement 1")
SMALL = PlateShape(
    images=12,
    image_bytes=48 * 1024,
    illum_bytes=16 * 1024,
    csv_bytes=8 * 1024,
    backend_bytes=64 * 1024,
)


@pytest.fixture(scope="session")
def loopback() -> Iterator[LoopbackS3]:
    server = LoopbackS3().start()
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(name, None)
    os.environ.update(server.environ())
    reset_clients()
    yield server
    server.stop()


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    with prefect_test_harness(server_startup_timeout=120):
        yield


def fresh_endpoint(loopback: LoopbackS3):
    """Reset the endpoint, create the live and cold buckets, return a client."""
    loopback.reset()
    reset_clients()
    client = boto3.client("s3", endpoint_url=loopback.endpoint_url)
    client.create_bucket(Bucket=LIVE)
    client.create_bucket(Bucket=COLD)
    return client


def seed_into(client, *plates: tuple[str, str], shape: PlateShape = SMALL) -> dict[str, bytes]:
    """Seed plates; returns every seeded key with its body."""
    seed_plates(client, LIVE, PROJECT, BATCH, list(plates), shape)
    keys = [k for p in plates for k, _, _ in plate_objects(PROJECT, BATCH, *p, shape)]
    return {k: client.get_object(Bucket=LIVE, Key=k)["Body"].read() for k in keys}


@pytest.fixture
def s3(loopback: LoopbackS3) -> Iterator:
    """A client on a freshly reset endpoint with the live and cold buckets."""
    client = fresh_endpoint(loopback)
    yield client
    loopback.clear_faults()


@pytest.fixture
def plates_csv(tmp_path: Path) -> Callable[..., str]:
    def write(*plates: tuple[str, str], text: str | None = None) -> str:
        path = tmp_path / "plates.csv"
        if text is None:
            text = "plate_id,plate_id_full\n" + "".join(f"{a},{b}\n" for a, b in plates)
        path.write_text(text)
        return str(path)

    return write


@pytest.fixture
def seed(s3) -> Callable[..., dict[str, bytes]]:
    """Seed plates; returns every seeded key with its body."""

    def run(*plates: tuple[str, str], shape: PlateShape = SMALL) -> dict[str, bytes]:
        return seed_into(s3, *plates, shape=shape)

    return run


def live_keys(client, prefix: str = "projects/") -> dict[str, str]:
    """Every live key under prefix with its ETag."""
    out = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=LIVE, Prefix=prefix):
        for obj in page.get("Contents", ()):
            out[obj["Key"]] = obj["ETag"]
    return out


def source_keys(client) -> dict[str, str]:
    """Live keys outside the backup folder (the plates' sources)."""
    return {k: v for k, v in live_keys(client).items() if "/workspace/backup/" not in k}


def task_runs_of(run_id) -> int:
    """How many task runs a flow run and its subflow runs made (from the Prefect API)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def count() -> int:
        async with get_client() as client:
            children = await client.read_flow_runs(
                flow_run_filter=FlowRunFilter(parent_flow_run_id={"any_": [run_id]})
            )
            ids = [run_id, *(c.id for c in children)]
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
            )
            return len(runs)

    return asyncio.run(count())


def restore_events(match: Callable[[Any], bool], timeout: float = 20.0) -> list:
    """The ``coldflow.restore.*`` events (from the Prefect API) that ``match`` accepts, waiting
    a little for them to arrive (events are sent in the background)."""
    import asyncio
    import time

    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    async def read() -> list:
        async with get_client() as c:
            page = await c.read_events(
                EventFilter(
                    event=EventNameFilter(prefix=["coldflow.restore."]),
                    occurred=EventOccurredFilter(),
                ),
                limit=50,
            )
            return [e for e in page.events if match(e)]

    end = time.monotonic() + timeout
    while True:
        found = asyncio.run(read())
        if found or time.monotonic() > end:
            return found
        time.sleep(0.3)


@pytest.fixture
def progress_shown(monkeypatch) -> list[float]:
    """Every value a progress artifact is created with or updated to, in order."""
    import prefect.artifacts

    shown: list[float] = []
    create = prefect.artifacts.create_progress_artifact
    update = prefect.artifacts.update_progress_artifact

    def created(progress, *args, **kwargs):
        shown.append(progress)
        return create(progress, *args, **kwargs)

    def updated(artifact_id, progress, *args, **kwargs):
        shown.append(progress)
        return update(artifact_id, progress, *args, **kwargs)

    monkeypatch.setattr(prefect.artifacts, "create_progress_artifact", created)
    monkeypatch.setattr(prefect.artifacts, "update_progress_artifact", updated)
    return shown


@contextlib.contextmanager
def small_scratch(path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (the test is skipped where mounting isn't
    allowed)."""
    path.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], check=False)


def fill_disk(filler: Path, leave: int = 64 * 1024) -> None:
    """Fill the disk ``filler`` is on with it, leaving ``leave`` bytes (another writer)."""
    left = shutil.disk_usage(filler.parent).free - leave
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while left > 0:
            left -= f.write(b"\0" * min(left, 1 << 20))


def nth(n: int, match: Callable[[Any], bool]) -> Callable[[Any], bool]:
    """A request predicate for :func:`kill_child_at`: true at the ``n``-th request that
    ``match`` accepts."""
    seen = [0]

    def at(request: Any) -> bool:
        if not match(request):
            return False
        seen[0] += 1
        return seen[0] == n

    return at


def kill_child_at(
    loopback: LoopbackS3,
    script: str,
    args: list[str],
    at: Callable[[Any], bool],
    *,
    served: bool = False,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``script`` in a child Python process on the loopback endpoint and the test's Prefect
    API, and SIGKILL it when a request with ``at(request)`` arrives. The request is not served
    (the killed process never sent it) unless ``served``: then S3 acts on it and the child
    dies before hearing the answer. Returns the child's stderr; asserts it was killed."""
    import signal
    import sys
    import threading

    from prefect.settings import PREFECT_API_URL

    child: dict[str, Any] = {}
    killed = threading.Event()

    def responder(request, environ, start_response):
        if killed.is_set() or "proc" not in child or not at(request):
            return None
        killed.set()
        if served:  # S3 acts on the whole request first; the answer finds nobody
            answer = list(loopback.injector.serve(request, environ, start_response))
            os.kill(child["proc"].pid, signal.SIGKILL)
            return answer
        os.kill(child["proc"].pid, signal.SIGKILL)
        start_response("503 Service Unavailable", [("Content-Length", "0")])
        return [b""]

    assert loopback.injector is not None
    loopback.injector.responders.append(responder)
    child["proc"] = subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env={
            **os.environ,
            **loopback.environ(),
            "PREFECT_API_URL": PREFECT_API_URL.value(),
            **(env or {}),
        },
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = child["proc"].communicate(timeout=300)
    assert killed.is_set() and child["proc"].returncode == -signal.SIGKILL, err[-2000:]
    loopback.clear_faults()
    return err
