"""Restore-request throughput: the seed script's approach, rclone, and restore_prefix.

    python -m bench.restore_bench [--objects 10000] [--runs 3] [--scenarios cold,rerun]
                                  [--endpoint-cpu]

On one loopback endpoint in a process of its own, the tools take turns, ``--runs``
rounds; in each round every tool restores ``--objects`` GLACIER objects in a bucket
of its own, dropped afterwards (moto slows down as it holds more objects; S3 does not), in
two scenarios: ``cold`` (none restored) and ``rerun`` (as after an interrupted run: a quarter
already restored, a quarter still in progress). keys/s (medians) and requests per object are
reported, then restore_prefix runs once
more with restores that take a few seconds, to count the sensor's requests per
object. restore_prefix runs against a Prefect server in a process of its own, as
in production; every tool gets the same credentials. With ``--endpoint-cpu`` the endpoint
runs on a CPU of its own and the tools on the others: on a small machine the endpoint is
otherwise slowed by the CPU time of the tool it serves, which S3 is not.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
import requests

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
from loopback.net import LOOPBACK_CREDENTIALS

PREFIX = "objects/"


def seed_approach(s3, bucket: str, workers: int = 8) -> None:
    """The script coldflow replaces: list, then per key a HEAD and a restore, 8 threads."""
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=PREFIX)
        for o in page.get("Contents", [])
    ]

    def one(key: str) -> None:
        head = s3.head_object(Bucket=bucket, Key=key)
        if head.get("StorageClass") in {"GLACIER", "DEEP_ARCHIVE"} and not head.get("Restore"):
            s3.restore_object(
                Bucket=bucket,
                Key=key,
                RestoreRequest={"Days": 7, "GlacierJobParameters": {"Tier": "Standard"}},
            )

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, keys))


def requested(seen: dict[str, int]) -> int:
    """RestoreObject requests the endpoint admitted (not throttled)."""
    return admitted(seen, "RestoreObject")


def two_capped_runs(url: str, s3, fresh_bucket, tmp: str, dilation: float) -> dict:
    """Two restore_prefix runs at once, each with max_requests_per_second at half the
    ceiling: their rate together, first request to last, as a share of the ceiling."""
    from flows.restore import restore_prefix

    half = ceiling("restore", dilation) / 2
    buckets = [fresh_bucket(f"restore-bench-pair-{i}") for i in range(2)]
    reset_counts(url)
    with ThreadPoolExecutor(2) as pool:
        list(
            pool.map(
                lambda b: restore_prefix(
                    b, PREFIX, wait=False, work_dir=tmp, max_requests_per_second=half
                ),
                buckets,
            )
        )
    made, together = counts(url), span(url, "RestoreObject")
    each = []
    for b in buckets:
        each.append(round((requested(made) / 2) / span(url, f"RestoreObject {b}"), 1))
        drop_bucket(s3, b)
    limit = ceiling("restore", dilation)
    return {
        "max_requests_per_second_each": half,
        "restores_per_s_each": each,  # over its own first to last request
        "share_of_ceiling_together": round(sum(each) / limit, 3),
        "share_of_ceiling_first_to_last": round(requested(made) / together / limit, 3),
        "throttled": throttled(made),
    }


def rclone(url: str, bucket: str, checkers: int | None = None) -> None:
    # it refuses a custom CA bundle on a plain-http endpoint
    env = {k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"}
    env.update(
        RCLONE_CONFIG_LB_TYPE="s3",
        RCLONE_CONFIG_LB_PROVIDER="Other",
        RCLONE_CONFIG_LB_ENDPOINT=url,
        RCLONE_CONFIG_LB_ACCESS_KEY_ID=LOOPBACK_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        RCLONE_CONFIG_LB_SECRET_ACCESS_KEY=LOOPBACK_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        RCLONE_CONFIG_LB_SESSION_TOKEN=LOOPBACK_CREDENTIALS["AWS_SESSION_TOKEN"],
        RCLONE_CONFIG_LB_REGION=LOOPBACK_CREDENTIALS["AWS_DEFAULT_REGION"],
    )
    subprocess.run(
        [
            "rclone",
            "backend",
            "restore",
            f"lb:{bucket}/{PREFIX}",
            "-o",
            "priority=Standard",
            "-o",
            "lifetime=7",
            *(["--checkers", str(checkers)] if checkers else []),
        ],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scenarios", default="cold,rerun,pair")
    ap.add_argument(
        "--tools",
        default="seed,rclone,rclone-defaults,restore_prefix",
        help="which tools run (comma-separated): seed, rclone, rclone-defaults, restore_prefix",
    )
    ap.add_argument(
        "--endpoint-cpu",
        action="store_true",
        help="give the endpoint a CPU of its own, the tools the others (S3 is not on our CPUs)",
    )
    add_model_arguments(ap, "restore")
    args = ap.parse_args(argv)
    scenarios = args.scenarios.split(",")
    n = args.objects
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    report: dict = {
        "objects": n,
        "runs": args.runs,
        "endpoint_cpu": args.endpoint_cpu,
        "scenarios": {},
    }
    with (
        tempfile.TemporaryDirectory() as tmp,
        endpoint_process(own_cpu=args.endpoint_cpu, **model_of(args)) as url,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        s3 = boto3.client("s3")

        def fresh_bucket(name: str, scenario: str = "cold") -> str:
            s3.create_bucket(Bucket=name)
            bulk_put(url, name, PREFIX, n, "GLACIER")
            if scenario == "rerun":  # a quarter restored, a quarter in progress
                for start, ready_in in ((0, 0), (2, 3600)):
                    requests.post(
                        f"{url}/_loopback/restore",
                        params={
                            "bucket": name,
                            "prefix": PREFIX,
                            "count": n,
                            "start": start,
                            "step": 4,
                            "ready_in": ready_in,
                        },
                        timeout=600,
                    ).raise_for_status()
            return name

        from flows.restore import restore_prefix

        s3.create_bucket(Bucket="warm-up")
        restore_prefix("warm-up", "none/", wait=False, work_dir=tmp)  # server's first run

        every = {
            "seed": ("seed approach (HEAD+restore, 8 threads)", lambda b: seed_approach(s3, b)),
            "rclone": (
                "rclone backend restore (32 checkers)",
                lambda b: rclone(url, b, checkers=32),
            ),
            "rclone-defaults": ("rclone backend restore (defaults)", lambda b: rclone(url, b)),
            "restore_prefix": (
                "restore_prefix",
                lambda b: restore_prefix(b, PREFIX, wait=False, work_dir=tmp),
            ),
        }
        chosen = args.tools.split(",")
        if not shutil.which("rclone"):
            print("rclone not found (apt-get install rclone): skipped")
            chosen = [t for t in chosen if not t.startswith("rclone")]
        tools = dict(every[t] for t in chosen)
        pair = "pair" in scenarios
        scenarios = [sc for sc in scenarios if sc != "pair"]
        rows = {(sc, name): [] for sc in scenarios for name in tools}
        for i in range(args.runs):
            for sc in scenarios:
                for t_index, (name, run) in enumerate(tools.items()):
                    bucket = fresh_bucket(f"restore-bench-{sc}-{i}-{t_index}", sc)
                    reset_counts(url)
                    t, cpu = time.monotonic(), cpu_seconds()
                    run(bucket)
                    seconds, cpu = time.monotonic() - t, cpu_seconds() - cpu
                    made, requesting = counts(url), span(url, "RestoreObject")
                    drop_bucket(s3, bucket)  # keep the endpoint's state the same size
                    rows[(sc, name)].append(
                        {
                            "seconds": seconds,
                            "span": requesting,
                            "requests": made,
                            "cpu": cpu,
                        }
                    )
                    print(
                        f"run {i + 1} {sc:<6} {name:<42} {n / seconds:8.1f} keys/s, "
                        f"{requested(made) / requesting:8.1f} restores/s first to last request",
                        flush=True,
                    )
        for (sc, name), runs in rows.items():
            seconds = median([r["seconds"] for r in runs])
            made = runs[-1]["requests"]
            rate = median([requested(r["requests"]) / r["span"] for r in runs])
            report["scenarios"].setdefault(sc, {})[name] = {
                "median_seconds": round(seconds, 2),
                "keys_per_s": round(n / seconds, 1),
                "runs_keys_per_s": [round(n / r["seconds"], 1) for r in runs],
                "restores_per_s": round(rate, 1),
                "requests_per_object": round(requests_sent(made) / n, 3),
                "throttled": throttled(made),
                "throttled_per_request": round(throttled(made) / max(requests_sent(made), 1), 4),
                "client_cpu_ms_per_object": round(median([r["cpu"] for r in runs]) * 1000 / n, 3),
                "requests": made,
            }
            if not args.no_model:
                row = report["scenarios"][sc][name]
                row["share_of_ceiling"] = round(rate / ceiling("restore", args.dilation), 3)
                row["s3_equivalent_keys_per_s"] = round(n / seconds * args.dilation, 1)
        if pair and not args.no_model:
            report["pair"] = two_capped_runs(url, s3, fresh_bucket, tmp, args.dilation)
            print(f"pair: {report['pair']}")

        requests.post(f"{url}/_loopback/durations", params={"Standard": 5}, timeout=10)
        bucket = fresh_bucket("restore-bench-sensor")
        reset_counts(url)
        t = time.monotonic()
        result = restore_prefix(
            bucket, PREFIX, wait=True, poll_interval=1, max_poll_interval=4, work_dir=tmp
        )
        report["sensor"] = {
            "seconds": round(time.monotonic() - t, 2),
            "ready": result["ready"],
            "sensor_requests_per_object": round(result.get("sensor_requests", 0) / n, 4),
            "all_requests_per_object": round(sum(counts(url).values()) / n, 3),
        }
    for sc, tools_of in report["scenarios"].items():
        if "restore_prefix" not in tools_of:
            continue
        ours = tools_of["restore_prefix"]["keys_per_s"]
        for name, row in tools_of.items():
            ratio = ours / row["keys_per_s"]
            row["restore_prefix_vs"] = round(ratio, 2)
            print(
                f"{sc:<6} {name:<42} {row['keys_per_s']:>8.1f} keys/s (median of {args.runs})  "
                f"{row['requests_per_object']:.3f} requests/object  restore_prefix {ratio:.2f}x  "
                f"share of ceiling {row.get('share_of_ceiling', '-')} (first to last request)  "
                f"throttled {row['throttled_per_request']:.2%}  "
                f"client CPU {row['client_cpu_ms_per_object']:.2f} ms/object"
            )
    print(f"sensor: {report['sensor']}")
    print(f"saved {save('restore', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
