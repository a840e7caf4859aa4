"""The pace alone: coldflow's request paths at a ceiling of the S3 model, under each pace.

    python -m bench.pace_bench [--kind restore|write|read] [--objects 3000] [--threads 256]
                               [--modes aimd,adaptive,off] [--runs 3] [--dilation D]

Many threads (more than any ceiling needs) send one kind of request through coldflow's own
code: restores through ``tasks.restore.requests.request_batch`` (its client sends each request
once and retries SlowDown itself), copies (``CopyObject``) and reads (``HeadObject``) through
the shared S3 client (botocore's retries). Each mode runs in a process of its own, modes
alternating within each round: ``aimd`` (coldflow's pace), ``adaptive`` (botocore's adaptive
retry mode, no pace) and ``off`` (neither: the threads alone). Reported per mode (medians):
the rate from the first admitted request to the last as a share of the ceiling, throttled
answers per request, requests that failed after their retries, client CPU per request.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench.common import (
    DILATION,
    bulk_put,
    ceiling,
    counts,
    cpu_seconds,
    endpoint_process,
    median,
    requests_sent,
    reset_counts,
    save,
    span,
    throttled,
)

BUCKET = "pace-bench"
#: The operation each kind sends, as the endpoint counts it (a copy is a PUT, counted as one).
OPERATION = {"restore": "RestoreObject", "write": "PutObject", "read": "HeadObject"}


def drive(prefix: str, kind: str, n: int, threads: int) -> dict:
    """Send ``n`` requests of ``kind`` for the keys under ``prefix`` from ``threads`` threads;
    what the client saw."""
    from tasks.core.clients import client, s3_client
    from tasks.restore.inventory import Candidate
    from tasks.restore.requests import request_batch

    keys = [f"{prefix}{i:07d}" for i in range(n)]
    cpu = cpu_seconds()
    if kind == "restore":
        batch = [Candidate(k, 1, "GLACIER", "GLACIER") for k in keys]
        outcome = request_batch(
            client("s3", retries=False), BUCKET, batch, "Standard", 7, workers=threads
        )
        failed = outcome.counts.get("error", 0)
    else:
        s3 = s3_client()

        def one(key: str) -> bool:
            try:
                if kind == "write":
                    s3.copy_object(
                        Bucket=BUCKET, Key="copy/" + key, CopySource={"Bucket": BUCKET, "Key": key}
                    )
                else:
                    s3.head_object(Bucket=BUCKET, Key=key)
                return True
            except Exception:
                return False

        with ThreadPoolExecutor(threads) as pool:
            failed = sum(not ok for ok in pool.map(one, keys))
    return {"failed": failed, "client_cpu_s": cpu_seconds() - cpu}


def measure(url: str, kind: str, mode: str, n: int, threads: int, prefix: str) -> dict:
    """One run of ``mode`` in a process of its own, measured at the endpoint."""
    bulk_put(url, BUCKET, prefix, n, "GLACIER" if kind == "restore" else "STANDARD")
    reset_counts(url)
    env = {**os.environ, "COLDFLOW_PACE": mode, "AWS_ENDPOINT_URL": url}
    began = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "bench.pace_bench", "--drive", kind, str(n), str(threads), prefix],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    wall = time.monotonic() - began
    seen = counts(url)
    seconds = span(url, OPERATION[kind])
    client = json.loads(out.strip().splitlines()[-1])
    sent = requests_sent(seen)
    return {
        "wall_s": round(wall, 2),
        "span_s": round(seconds, 2),
        "rate_per_s": round(n / seconds, 1),
        "throttled": throttled(seen),
        "throttled_per_request": round(throttled(seen) / sent, 4),
        "failed": client["failed"],
        "client_cpu_ms_per_request": round(client["client_cpu_s"] * 1000 / sent, 3),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--drive"]:
        kind, n, threads, prefix = argv[1:]
        print(json.dumps(drive(prefix, kind, int(n), int(threads))))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=sorted(OPERATION), default="restore")
    ap.add_argument("--objects", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=256)
    ap.add_argument("--modes", default="aimd,adaptive,off")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dilation", type=float)
    args = ap.parse_args(argv)
    dilation = args.dilation or DILATION[args.kind]
    modes = args.modes.split(",")
    n = args.objects
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    with endpoint_process(model="s3", dilation=dilation) as url:
        import boto3

        s3 = boto3.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket=BUCKET)
        for i in range(args.runs):
            for mode in modes:  # objects of its own for each run: cold, not yet copied
                row = measure(url, args.kind, mode, n, args.threads, f"{i}-{mode}/")
                rows[mode].append(row)
                print(f"run {i + 1} {mode:<9} {json.dumps(row)}", flush=True)
    limit = ceiling(args.kind, dilation)
    report: dict = {
        "kind": args.kind,
        "objects": n,
        "threads": args.threads,
        "dilation": dilation,
        "ceiling_per_s": limit,
        "modes": {},
    }
    for mode, runs in rows.items():
        rate = median([r["rate_per_s"] for r in runs])
        report["modes"][mode] = {
            "share_of_ceiling": round(rate / limit, 3),
            "throttled_per_request": median([r["throttled_per_request"] for r in runs]),
            "failed": median([r["failed"] for r in runs]),
            "client_cpu_ms_per_request": median([r["client_cpu_ms_per_request"] for r in runs]),
            "runs": runs,
        }
        m = report["modes"][mode]
        print(
            f"{mode:<9} share of ceiling {m['share_of_ceiling']:.3f}  throttled "
            f"{m['throttled_per_request']:.2%}  failed {m['failed']}  client CPU "
            f"{m['client_cpu_ms_per_request']:.2f} ms/request"
        )
    print(f"saved {save(f'pace-{args.kind}', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
