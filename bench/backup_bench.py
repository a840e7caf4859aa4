"""Bucket backup: backup_bucket against `aws s3 sync` and `rclone sync` (server-side copies).

    python -m bench.backup_bench [--objects 10000] [--runs 3] [--unchanged-repeats 3]

On one loopback endpoint in a process of its own, each tool backs up the same source
bucket of ``--objects`` small objects into a fresh bucket of its own (first full backup,
objects/s), then runs again with nothing changed (requests per object: two listings
should be all it takes). The unchanged run lasts seconds, so on a host whose speed drifts it
is repeated ``--unchanged-repeats`` times back to back and its median kept (only once when a
run takes more than half a minute: at that size the figure needs no more precision). The
tools take turns for ``--runs`` rounds (the bucket is dropped after each, so the endpoint
holds the same number of objects every time); medians are reported. backup_bucket runs in
a fresh process against a Prefect server in a process of its own, as in production. rclone
is skipped when it is not installed (apt-get install rclone).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

from bench.common import (
    add_model_arguments,
    bulk_put,
    ceiling,
    counts,
    cpu_seconds,
    drop_bucket,
    endpoint_process,
    median,
    model_of,
    prefect_server_process,
    reset_counts,
    save,
)

SOURCE = "bench-source"
#: An unchanged run longer than this is not repeated.
REPEAT_UNDER_SECONDS = 30.0


def aws_sync(url: str, target: str) -> None:
    subprocess.run(
        [
            "aws",
            "--endpoint-url",
            url,
            "--only-show-errors",
            "s3",
            "sync",
            f"s3://{SOURCE}",
            f"s3://{target}",
        ],
        check=True,
    )


def rclone_sync(url: str, target: str) -> None:
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    subprocess.run(
        [
            "rclone",
            "sync",
            f":s3:{SOURCE}",
            f":s3:{target}",
            "--s3-provider",
            "Other",
            "--s3-endpoint",
            url,
            "--s3-env-auth",
            "--transfers",
            "32",
            "--checkers",
            "32",
            "--s3-no-check-bucket",
        ],
        check=True,
        env=env,
    )


def coldflow_sync(url: str, target: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from flows.backup import backup_bucket; "
            f"backup_bucket({SOURCE!r}, {target!r})",
        ],
        check=True,
        capture_output=True,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--unchanged-repeats", type=int, default=3)
    add_model_arguments(ap, "write")
    args = ap.parse_args(argv)
    tools = {"backup_bucket": coldflow_sync, "aws s3 sync": aws_sync}
    if shutil.which("rclone"):
        tools["rclone sync"] = rclone_sync
    else:
        print("rclone not found (apt-get install rclone): skipped")
    rows: dict[str, list[dict]] = {name: [] for name in tools}
    with (
        endpoint_process(**model_of(args)) as url,
        tempfile.TemporaryDirectory() as tmp,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=SOURCE)
        bulk_put(url, SOURCE, "data/", args.objects, "STANDARD")
        for i in range(args.runs):
            for n, (name, tool) in enumerate(tools.items()):
                target = f"bench-backup-{i}-{n}"
                s3.create_bucket(Bucket=target)
                reset_counts(url)
                t, cpu = time.monotonic(), cpu_seconds()
                tool(url, target)
                first, cpu = time.monotonic() - t, cpu_seconds() - cpu
                first_requests = sum(counts(url).values())
                again: list[float] = []
                while len(again) < args.unchanged_repeats:
                    reset_counts(url)
                    t = time.monotonic()
                    tool(url, target)
                    again.append(round(time.monotonic() - t, 2))
                    again_requests = sum(counts(url).values())
                    if again[-1] > REPEAT_UNDER_SECONDS:
                        break
                drop_bucket(s3, target)
                rows[name].append(
                    {
                        "first_objects_per_s": round(args.objects / first, 1),
                        "first_requests_per_object": round(first_requests / args.objects, 4),
                        "first_client_cpu_ms_per_object": round(cpu * 1000 / args.objects, 2),
                        "unchanged_seconds": median(again),
                        "unchanged_runs": again,
                        "unchanged_requests_per_object": round(again_requests / args.objects, 4),
                    }
                )
                print(f"run {i + 1} {name:<14} {rows[name][-1]}", flush=True)
    report: dict = {"objects": args.objects, "runs": args.runs, "results": {}}
    for name, runs in rows.items():
        report["results"][name] = {
            "first_objects_per_s": median([r["first_objects_per_s"] for r in runs]),
            "unchanged_seconds": median([r["unchanged_seconds"] for r in runs]),
            "first_requests_per_object": runs[-1]["first_requests_per_object"],
            "first_client_cpu_ms_per_object": median(
                [r["first_client_cpu_ms_per_object"] for r in runs]
            ),
            "unchanged_requests_per_object": runs[-1]["unchanged_requests_per_object"],
            "runs": runs,
        }
        if not args.no_model:
            rate = report["results"][name]["first_objects_per_s"]
            report["results"][name]["first_share_of_write_ceiling"] = round(
                rate / ceiling("write", args.dilation), 3
            )
            report["results"][name]["first_s3_equivalent_per_s"] = round(rate * args.dilation, 1)
        summary = {k: v for k, v in report["results"][name].items() if k != "runs"}
        print(f"{name:<14} medians of {args.runs}: {summary}", flush=True)
    print(f"saved {save('backup', report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
