"""Restore-request throughput: the seed script's approach, rclone, and restore_prefix.

    python -m bench.restore_bench [--objects 10000]

On one loopback endpoint in a process of its own, each tool restores its own
prefix of GLACIER objects; keys/s and requests per object are reported, then
restore_prefix runs once more with restores that take a few seconds, to count
the sensor's requests per object.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import boto3

from bench.common import bulk_put, counts, endpoint_process, reset_counts, save

BUCKET = "restore-bench"


def seed_approach(s3, prefix: str, workers: int = 8) -> None:
    """The script coldflow replaces: list, then per key a HEAD and a restore, 8 threads."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
        for o in page.get("Contents", [])
    ]

    def one(key: str) -> None:
        head = s3.head_object(Bucket=BUCKET, Key=key)
        if head.get("StorageClass") in {"GLACIER", "DEEP_ARCHIVE"} and not head.get("Restore"):
            s3.restore_object(
                Bucket=BUCKET,
                Key=key,
                RestoreRequest={"Days": 7, "GlacierJobParameters": {"Tier": "Standard"}},
            )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, keys))


def rclone(url: str, prefix: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        RCLONE_CONFIG_LB_TYPE="s3",
        RCLONE_CONFIG_LB_PROVIDER="Other",
        RCLONE_CONFIG_LB_ENDPOINT=url,
        RCLONE_CONFIG_LB_ACCESS_KEY_ID="testing",
        RCLONE_CONFIG_LB_SECRET_ACCESS_KEY="testing",
        RCLONE_CONFIG_LB_REGION="us-east-1",
    )
    subprocess.run(
        [
            "rclone",
            "backend",
            "restore",
            f"lb:{BUCKET}/{prefix}",
            "-o",
            "priority=Standard",
            "-o",
            "lifetime=7",
            "--checkers",
            "32",
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10_000)
    args = ap.parse_args(argv)
    n = args.objects
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    report: dict = {"objects": n, "tools": {}}
    with endpoint_process() as url, tempfile.TemporaryDirectory() as tmp:
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        for prefix in ("seed/", "rclone/", "coldflow/", "sensor/"):
            bulk_put(url, BUCKET, prefix, n, "GLACIER")

        from flows.restore import restore_prefix

        restore_prefix(BUCKET, "none/", wait=False, work_dir=tmp)  # start Prefect's API first

        runs = {
            "seed approach (HEAD+restore, 8 threads)": lambda: seed_approach(s3, "seed/"),
            "restore_prefix": lambda: restore_prefix(BUCKET, "coldflow/", wait=False, work_dir=tmp),
        }
        if shutil.which("rclone"):
            runs["rclone backend restore (32 checkers)"] = lambda: rclone(url, "rclone/")
        else:
            print("rclone not found (apt-get install rclone): skipped")
        for name, run in runs.items():
            reset_counts(url)
            t = time.monotonic()
            run()
            seconds = time.monotonic() - t
            made = counts(url)
            report["tools"][name] = {
                "seconds": round(seconds, 2),
                "keys_per_s": round(n / seconds, 1),
                "requests_per_object": round(sum(made.values()) / n, 3),
                "requests": made,
            }

        requests_to_durations = __import__("requests")
        requests_to_durations.post(f"{url}/_loopback/durations", params={"Standard": 5}, timeout=10)
        reset_counts(url)
        t = time.monotonic()
        result = restore_prefix(
            BUCKET, "sensor/", wait=True, poll_interval=1, max_poll_interval=4, work_dir=tmp
        )
        report["sensor"] = {
            "seconds": round(time.monotonic() - t, 2),
            "ready": result["ready"],
            "sensor_requests_per_object": round(result.get("sensor_requests", 0) / n, 4),
            "all_requests_per_object": round(sum(counts(url).values()) / n, 3),
        }
    for name, row in report["tools"].items():
        print(
            f"{name:<42} {row['keys_per_s']:>8.1f} keys/s  "
            f"{row['requests_per_object']:.3f} requests/object"
        )
    print(f"sensor: {report['sensor']}")
    print(f"saved {save('restore', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
