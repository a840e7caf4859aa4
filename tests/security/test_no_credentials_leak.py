"""Credentials never land in logs, artifacts, exceptions, ledgers or scratch files.

The flows run in a child process with recognisable fake credentials (the loopback endpoint
accepts any) and a Prefect home of their own; then everything they produced is scanned: the
process's output, every file under its Prefect home (the embedded API's database holds the
runs' logs, parameters, states and artifacts), scratch and work folders, ledgers, and every
object and metadata value they wrote to S3.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import BATCH, COLD, LIVE, PROJECT, SPACED

SECRETS = {
    "AWS_ACCESS_KEY_ID": "AKIACOLDFLOWLEAKTEST7",
    "AWS_SECRET_ACCESS_KEY": "coldflow-leak-secret-9f8e7d6c5b4a",
    "AWS_SESSION_TOKEN": "coldflow-leak-session-token-1a2b3c4d",
}

SCRIPT = """
import sys
from flows.archive import archive_plates
from flows.batch_restore import bulk_restore
from flows.restore import restore_plates, restore_prefix

tmp, project, batch, live, cold = sys.argv[1:]
archive_plates(f"{tmp}/plates.csv", project, batch, live, cold,
               scratch_dir=f"{tmp}/scratch", delete_source=True, keep_scratch=True)
restore_prefix(cold, "imaging_analysis/", work_dir=f"{tmp}/work",
               ledger_path=f"{tmp}/ledger.csv", poll_interval=0.2)
restore_plates(f"{tmp}/plates.csv", project, batch, live, cold,
               scratch_dir=f"{tmp}/scratch", poll_interval=0.2)
bulk_restore(cold, "imaging_analysis/", work_dir=f"{tmp}/work",
             ledger_path=f"{tmp}/bulk-ledger.csv", poll_interval=0.2)
for bad in (lambda: restore_prefix("no-such-bucket", "x/"),
            lambda: archive_plates(f"{tmp}/missing.csv", "p", "b", live, cold)):
    try:
        bad()
    except Exception as exc:
        print("EXPECTED", type(exc).__name__, exc)
"""


def test_no_credential_in_anything_the_flows_produce(loopback, s3, seed, tmp_path):
    seed(SPACED)
    (tmp_path / "plates.csv").write_text(f"plate_id,plate_id_full\n{SPACED[0]},{SPACED[1]}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "PREFECT_"))},
        **loopback.environ(),
        **SECRETS,
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_LOGGING_LEVEL": "DEBUG",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "300",  # a busy machine
        "COLDFLOW_SCRATCH": str(tmp_path / "scratch"),
        "DO_NOT_TRACK": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), PROJECT, BATCH, LIVE, COLD],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("EXPECTED") == 2  # errors were raised and printed
    assert loopback.access_keys.get(SECRETS["AWS_ACCESS_KEY_ID"], 0) > 50  # they were used

    needles = [v.encode() for v in SECRETS.values()]
    leaks = []
    for text in (done.stdout, done.stderr):
        leaks += [n for n in needles if n in text.encode()]
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.suffix == ".db" for p in files), "the run's database was not found"
    assert any(p.name.endswith("ledger.csv") for p in files)
    for path in files:
        data = path.read_bytes()
        leaks += [f"{path}: {n.decode()}" for n in needles if n in data]
    objects = 0
    for bucket in (LIVE, COLD):
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for o in page.get("Contents", []):
                got = s3.get_object(Bucket=bucket, Key=o["Key"])
                blob = got["Body"].read() + repr(got.get("Metadata")).encode()
                objects += 1
                leaks += [f"s3://{bucket}/{o['Key']}" for n in needles if n in blob]
    assert objects > 10
    assert leaks == []
