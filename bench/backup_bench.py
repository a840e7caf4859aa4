"""Bucket backup: backup_bucket against `aws s3 sync` and `rclone sync` (server-side copies).

    python -m bench.backup_bench [--objects 10000] [--runs 3] [--unchanged-repeats 3]
    python -m bench.backup_bench --unchanged-only --objects 100000 --runs 1 --dilation 40

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

``--unchanged-only`` measures the unchanged run alone, on buckets too large to back up first
on the model: the backup bucket is seeded with the same objects (same bytes, so the same
ETags, and newer), and `backup_bucket`, `compare_buckets` and `aws s3 sync` each list both
buckets and find nothing to do.
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
    admitted,
    bulk_put,
    ceiling,
    counts,
    cpu_seconds,
    drop_bucket,
    endpoint_process,
    median,
    model_of,
    prefect_server_process,
    requests_sent,
    reset_counts,
    save,
    span,
    throttled,
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


def coldflow_compare(url: str, target: str) -> None:
    subprocess.run(
        [
            sys.executable,
            "-c",
            "from flows.backup import compare_buckets; "
            f"r = compare_buckets({SOURCE!r}, {target!r}); "
            "assert r['missing'] == r['differing'] == r['extra'] == 0, r",
        ],
        check=True,
        capture_output=True,
    )


def unchanged_only(args: argparse.Namespace) -> int:
    """The unchanged run of each tool on a backup bucket seeded with the source's objects."""
    tools = {
        "backup_bucket": coldflow_sync,
        "compare_buckets": coldflow_compare,
        "aws s3 sync": aws_sync,
    }
    seconds: dict[str, list[float]] = {name: [] for name in tools}
    with (
        endpoint_process(own_cpu=(os.cpu_count() or 1) > 1, **model_of(args)) as url,
        tempfile.TemporaryDirectory() as tmp,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        s3 = boto3.client("s3")
        target = "bench-backup-seeded"
        for bucket in (SOURCE, target):
            s3.create_bucket(Bucket=bucket)
            bulk_put(url, bucket, "data/", args.objects, "STANDARD")
        for i in range(args.runs):
            for name, tool in tools.items():
                reset_counts(url)
                t = time.monotonic()
                tool(url, target)
                seconds[name].append(round(time.monotonic() - t, 2))
                sent = counts(url)
                copies = sent.get("PutObject", 0)
                print(
                    f"run {i + 1} {name:<16} {seconds[name][-1]:8.2f} s  "
                    f"{sent.get('ListObjects', 0)} listings, {copies} writes",
                    flush=True,
                )
                if copies:
                    raise SystemExit(f"{name} wrote to an unchanged bucket")
    base = median(seconds["aws s3 sync"])
    report = {"objects": args.objects, "dilation": args.dilation, "unchanged": {}}
    for name, runs in seconds.items():
        m = median(runs)
        report["unchanged"][name] = {"median_s": m, "x_aws": round(base / m, 2), "runs": runs}
        print(f"{name:<16} median {m:8.2f} s  {base / m:5.2f}x aws s3 sync")
    print(f"saved {save('backup-unchanged', report)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--unchanged-repeats", type=int, default=3)
    ap.add_argument("--unchanged-only", action="store_true")
    ap.add_argument(
        "--tools", default="backup_bucket,aws,rclone", help="backup_bucket, aws, rclone"
    )
    add_model_arguments(ap, "write")
    args = ap.parse_args(argv)
    if args.unchanged_only:
        return unchanged_only(args)
    every = {"backup_bucket": coldflow_sync, "aws": aws_sync, "rclone": rclone_sync}
    names = {"aws": "aws s3 sync", "rclone": "rclone sync"}
    chosen = args.tools.split(",")
    if "rclone" in chosen and not shutil.which("rclone"):
        print("rclone not found (apt-get install rclone): skipped")
        chosen.remove("rclone")
    tools = {names.get(t, t): every[t] for t in chosen}
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
                seen = counts(url)
                first_requests = requests_sent(seen)
                # a copy is a PUT with a copy source: the endpoint counts it as PutObject
                copies = admitted(seen, "PutObject")
                copying = span(url, f"PutObject {target}")
                again: list[float] = []
                again_requests = 0
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
                        # from the first copy to the last, as the endpoint saw them
                        "copies_per_s": round(copies / copying, 1),
                        "throttled_per_request": round(throttled(seen) / first_requests, 4),
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
            "copies_per_s": median([r["copies_per_s"] for r in runs]),
            "throttled_per_request": median([r["throttled_per_request"] for r in runs]),
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
            report["results"][name]["copies_share_of_write_ceiling"] = round(
                report["results"][name]["copies_per_s"] / ceiling("write", args.dilation), 3
            )
        summary = {k: v for k, v in report["results"][name].items() if k != "runs"}
        print(f"{name:<14} medians of {args.runs}: {summary}", flush=True)
    print(f"saved {save('backup', report)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
