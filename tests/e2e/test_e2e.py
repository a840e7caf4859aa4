"""End to end with real processes on loopback: prefect server, deploy, worker, UI, Dask, schedules.

These start a `prefect server` (its own database), deploy prefect.yaml, run a
deployment through a process worker against the loopback S3 endpoint, look at
the run in headless Chromium, run archive_plates on a Dask cluster of worker
processes, and check the scheduler creates the sweep's runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, source_keys

from deployments import ui
from loopback.net import free_port

# one process runs them all: they share one prefect server (pytest-xdist's loadgroup)
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e")]
PLATE_B = ("BR00099999", "BR00099999_full")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A real Prefect server on a free loopback port, scheduler looping every 2 s."""
    home = tmp_path_factory.mktemp("prefect-home")
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "2"
    proc = ui.start_server(port, home, home / "server.log")
    try:
        ui.wait_healthy(api)
        env = ui.prefect_env(api, home)
        ui.ensure_pool(env)
        ui.deploy_all(env)
        yield {"api": api, "url": f"http://127.0.0.1:{port}", "env": env, "home": home}
    finally:
        ui.stop(proc.pid)
        os.environ.pop("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS", None)


def api_post(api: str, path: str, body: dict) -> list | dict:
    response = httpx.post(f"{api}{path}", json=body, timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def archived_run(server, loopback, tmp_path_factory):
    """archive-plates run through `prefect deployment run` and a `--run-once` worker."""
    from conftest import fresh_endpoint, seed_into

    s3 = fresh_endpoint(loopback)
    originals = seed_into(s3, SPACED)
    tmp = tmp_path_factory.mktemp("e2e")
    csv = tmp / "plates.csv"
    csv.write_text(f"plate_id,plate_id_full\n{SPACED[0]},{SPACED[1]}\n")
    env = {**server["env"], **loopback.environ(), "COLDFLOW_SCRATCH": str(tmp / "scratch")}
    params = {
        "plates_csv": str(csv),
        "project_name": PROJECT,
        "batch_id": BATCH,
        "bucket": LIVE,
        "cold_bucket": COLD,
        "delete_source": True,
    }
    out = ui.prefect(
        "deployment",
        "run",
        "archive-plates/archive-plates",
        "--params",
        json.dumps(params),
        env=env,
    ).stdout
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", out).group(1)
    worker = ui.start_worker(env, tmp / "worker.log", run_once=True)
    assert worker.wait(timeout=300) == 0, (tmp / "worker.log").read_text()[-3000:]
    return {"id": run_id, "s3": s3, "originals": originals}


def test_deployment_run_by_a_worker_archives_the_plate(server, archived_run):
    run = httpx.get(f"{server['api']}/flow_runs/{archived_run['id']}", timeout=30).json()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    s3 = archived_run["s3"]
    cold = {o["Key"] for o in s3.list_objects_v2(Bucket=COLD)["Contents"]}
    assert any(k.endswith("_images_illum_analysis.tar.gz") for k in cold)
    assert any(k.endswith("_backend.etag") for k in cold)
    assert source_keys(s3) == {}


def test_every_flow_is_deployed_with_documented_parameters(server):
    deployments = api_post(server["api"], "/deployments/filter", {})
    by_name = {d["name"]: d for d in deployments}
    assert {
        "archive-plates",
        "restore-prefix",
        "restore-plates",
        "restore-progress-sweep",
        "thaw-vault",
    } <= set(by_name)
    schema = by_name["archive-plates"]["parameter_openapi_schema"]["properties"]
    assert "Delete the verified source objects" in schema["delete_source"]["description"]
    assert schema["max_parallel_plates"]["maximum"] == 16
    assert set(schema["storage_class"].get("enum", [])) >= {"DEEP_ARCHIVE", "GLACIER"}
    thaw = by_name["thaw-vault"]["parameter_openapi_schema"]["properties"]
    assert "only once its copy is verified" in thaw["delete_archive"]["description"]


def test_scheduler_creates_the_sweeps_future_runs(server):
    deployment = next(
        d
        for d in api_post(server["api"], "/deployments/filter", {})
        if d["name"] == "restore-progress-sweep"
    )
    deadline = time.monotonic() + 90
    scheduled: list = []
    while time.monotonic() < deadline and not scheduled:
        scheduled = api_post(
            server["api"],
            "/flow_runs/filter",
            {
                "deployments": {"id": {"any_": [deployment["id"]]}},
                "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}},
            },
        )
        time.sleep(1)
    assert scheduled, "no scheduled runs of restore-progress-sweep"
    times = sorted(r["next_scheduled_start_time"] or r["expected_start_time"] for r in scheduled)
    assert all(t.endswith(("00:00Z", "00:00+00:00")) or ":00:00" in t for t in times)


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def render(url: str, shot: Path, profile: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it."""
    flags = [
        chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1400,1000",
        "--virtual-time-budget=20000",
    ]
    subprocess.run(
        [*flags, f"--screenshot={shot}", url], check=True, capture_output=True, timeout=120
    )
    return subprocess.run(
        [*flags, "--dump-dom", url], check=True, capture_output=True, text=True, timeout=120
    ).stdout


@pytest.mark.skipif(
    chromium() is None,
    reason="Debian's chromium is not installed "
    "(`make test` installs it where apt-get is available)",
)
def test_ui_shows_the_run_and_its_plate_table(server, archived_run, tmp_path):
    run = httpx.get(f"{server['api']}/flow_runs/{archived_run['id']}", timeout=30).json()
    page = render(
        f"{server['url']}/runs/flow-run/{archived_run['id']}",
        tmp_path / "run.png",
        tmp_path / "profile",
    )
    assert run["name"] in page
    assert (tmp_path / "run.png").stat().st_size > 10_000
    artifacts = api_post(
        server["api"],
        "/artifacts/filter",
        {"artifacts": {"flow_run_id": {"any_": [archived_run["id"]]}, "type": {"any_": ["table"]}}},
    )
    table = next(a for a in artifacts if a["key"] == "archive-plates")
    page = render(
        f"{server['url']}/artifacts/artifact/{table['id']}",
        tmp_path / "artifact.png",
        tmp_path / "profile",
    )
    assert SPACED[0] in page and "archived" in page
    assert (tmp_path / "artifact.png").stat().st_size > 10_000


DASK_SCRIPT = """
import json, os, sys
from prefect_dask import DaskTaskRunner
from flows.archive import archive_plates
runner = DaskTaskRunner(cluster_class="distributed.LocalCluster",
                        cluster_kwargs={"n_workers": 2, "processes": True,
                                        "threads_per_worker": 1, "dashboard_address": None})
rows = archive_plates.with_options(task_runner=runner)(*sys.argv[1:6], scratch_dir=sys.argv[6],
                                                        max_parallel_plates=2)
print("RESULT " + json.dumps({"pid": os.getpid(), "rows": rows}))
"""


def test_archive_plates_on_a_dask_cluster_of_worker_processes(
    server, loopback, s3, seed, plates_csv, tmp_path
):
    seed(SPACED, PLATE_B)
    csv = plates_csv(SPACED, PLATE_B)
    env = {**server["env"], **loopback.environ()}
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            DASK_SCRIPT,
            csv,
            PROJECT,
            BATCH,
            LIVE,
            COLD,
            str(tmp_path / "scratch"),
        ],
        env=env,
        cwd=ui.ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.split("RESULT ", 1)[1])
    rows = result["rows"]
    assert [r["status"] for r in rows] == ["archived", "archived"]
    workers = {r["worker"].rsplit(":", 1)[1] for r in rows}
    assert len(workers) == 2 and str(result["pid"]) not in workers


RESTORE_SCRIPT = """
import sys
from flows.batch_restore import bulk_restore
result = bulk_restore(sys.argv[1], sys.argv[2], work_dir=sys.argv[3], poll_interval=0.2,
                      max_poll_interval=1.0)
assert result["status"] == "Complete", result
"""


def test_a_completed_restore_triggers_the_downstream_deployment(server, loopback, s3, tmp_path):
    """bulk_restore on the server emits coldflow.restore.complete; the check-restored
    deployment's trigger creates a run, and a worker runs it."""
    for i in range(5):
        s3.put_object(Bucket=COLD, Key=f"trig/k{i}", Body=b"x", StorageClass="GLACIER")
    env = {**server["env"], **loopback.environ()}
    out = subprocess.run(
        [sys.executable, "-c", RESTORE_SCRIPT, COLD, "trig/", str(tmp_path / "work")],
        env=env,
        cwd=ui.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    deployment = next(
        d
        for d in api_post(server["api"], "/deployments/filter", {})
        if d["name"] == "check-restored"
    )
    deadline = time.monotonic() + 90
    runs: list = []
    while time.monotonic() < deadline and not runs:
        runs = api_post(
            server["api"],
            "/flow_runs/filter",
            {"deployments": {"id": {"any_": [deployment["id"]]}}},
        )
        time.sleep(1)
    assert runs, "the trigger created no run of check-restored"
    assert runs[0]["parameters"] == {"bucket": COLD, "prefix": "trig/"}
    worker = ui.start_worker(env, tmp_path / "worker.log", run_once=True)
    assert worker.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()[-3000:]
    run = httpx.get(f"{server['api']}/flow_runs/{runs[0]['id']}", timeout=30).json()
    assert run["state"]["type"] == "COMPLETED", run["state"]


def test_coldflow_deployment_watch_follows_the_run_to_its_end(server, loopback, s3, tmp_path):
    """`coldflow check-restored ... --deployment --watch` submits to the server, a worker runs
    it, and the command follows it to the end and prints its table."""
    s3.put_object(Bucket=COLD, Key="watch/a", Body=b"x")
    env = {**server["env"], **loopback.environ()}
    coldflow = str(Path(sys.executable).parent / "coldflow")
    proc = subprocess.Popen(
        [coldflow, "check-restored", COLD, "--prefix", "watch/", "--deployment", "--watch"],
        env=env,
        cwd=ui.ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        seen = []
        for line in proc.stderr:
            seen.append(line)
            if line.startswith("submitted "):
                break
        assert seen and seen[-1].startswith("submitted check-restored/check-restored"), seen
        worker = ui.start_worker(env, tmp_path / "worker.log", run_once=True)
        assert worker.wait(timeout=300) == 0, (tmp_path / "worker.log").read_text()[-3000:]
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Completed" in err
    assert "restored-check" in out and "readable" in out
