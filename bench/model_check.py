"""Does the loopback's S3 model hold what it states? Ceilings, latency, and the endpoint's CPU.

    python -m bench.model_check [--dilation 10] [--seconds 20] [--kinds read,write,restore]

For each ceiling, a client with twice the requests in flight that Little's law asks for
(ceiling x latency; after a SlowDown a thread waits one median latency) sends HEADs (read),
PUTs of 1 byte (write) or RestoreObject (restore) at an endpoint in a process of its own for
``--seconds``, and reports: requests accepted per second against the ceiling, the share
throttled, the latency of accepted requests (median, p99) against the model's, and the
endpoint's CPU (share of one core, from /proc). A run at a quarter of the ceiling checks the
latency unthrottled.
"""

from __future__ import annotations

import argparse
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from bench.common import (
    bulk_put,
    ceiling,
    counts,
    endpoint_process,
    median,
    reset_counts,
    save,
    throttled,
)
from loopback.model import SMALL

BUCKET = "model-check"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime + stime, clock ticks


def _endpoint_pid(url: str) -> int:
    port = url.rsplit(":", 1)[1]
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmd = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"loopback" in cmd and port.encode() in cmd:
                return int(proc.name)
    raise RuntimeError("endpoint process not found")


def drive(url: str, kind: str, rate_share: float, seconds: float, in_flight: int) -> dict:
    """Send ``kind`` requests from ``in_flight`` threads; a share < 1 paces them below."""
    s3 = boto3.client(
        "s3",
        endpoint_url=url,
        config=Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            max_pool_connections=in_flight + 8,
            request_checksum_calculation="when_required",
        ),
    )
    target = ceiling(kind, DILATION[0]) * rate_share
    latencies: list[float] = []
    accepted = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    interval = in_flight / target if rate_share < 1 else 0.0

    def one(i: int) -> None:
        n = 0
        time.sleep(i * (interval or 1.0 / target) / in_flight)  # staggered starts
        while time.monotonic() < stop:
            began = time.monotonic()
            try:
                if kind == "read":
                    s3.head_object(Bucket=BUCKET, Key=f"k/{(i * 997 + n) % 2000:07d}")
                elif kind == "write":
                    s3.put_object(Bucket=BUCKET, Key=f"w/{i}/{n % 50}", Body=b"x")
                else:
                    s3.restore_object(
                        Bucket=BUCKET,
                        Key=f"g/{(i * 100_003 + n) % 200_000:07d}",
                        RestoreRequest={"Days": 1, "GlacierJobParameters": {"Tier": "Bulk"}},
                    )
                took = time.monotonic() - began
                with lock:
                    latencies.append(took)
                    accepted[0] += 1
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in (
                    "SlowDown",
                    "503",
                    "RestoreAlreadyInProgress",
                ):
                    raise
                time.sleep(SMALL.median * DILATION[0])  # a client that backs off a little
            n += 1
            if interval:
                time.sleep(max(0.0, interval - (time.monotonic() - began)))

    reset_counts(url)
    pid = _endpoint_pid(url)
    cpu0, t0 = _cpu_seconds(pid), time.monotonic()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, range(in_flight)))
    elapsed = time.monotonic() - t0
    cpu = (_cpu_seconds(pid) - cpu0) / elapsed
    seen = counts(url)
    latencies.sort()
    sent = sum(v for k, v in seen.items() if not k.startswith("SlowDown:"))
    return {
        "kind": kind,
        "load": rate_share,
        "in_flight": in_flight,
        "accepted_per_second": accepted[0] / elapsed,
        "ceiling_per_second": ceiling(kind, DILATION[0]),
        "share_of_ceiling": accepted[0] / elapsed / ceiling(kind, DILATION[0]),
        "throttled_share": throttled(seen) / max(1, sent),
        "latency_median_s": median(latencies),
        "latency_p99_s": latencies[int(len(latencies) * 0.99)] if latencies else float("nan"),
        "endpoint_cpu_cores": cpu,
    }


DILATION = [10.0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dilation", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--kinds", default="read,write,restore")
    ap.add_argument(
        "--out", default="model", help="the results file's name (bench/results/OUT-DATE.json)"
    )
    args = ap.parse_args()
    DILATION[0] = args.dilation
    rows = []
    with endpoint_process(model="s3", dilation=args.dilation) as url:
        s3 = boto3.client("s3", endpoint_url=url)
        s3.create_bucket(Bucket=BUCKET)
        bulk_put(url, BUCKET, "k/", 2000, "STANDARD")
        bulk_put(url, BUCKET, "g/", 200_000, "GLACIER")
        model = __import__("requests").get(f"{url}/_loopback/model", timeout=10).json()
        for kind in args.kinds.split(","):
            need = ceiling(kind, args.dilation) * SMALL.median * 1.5 * args.dilation
            for share, in_flight in ((0.25, max(4, int(need / 3))), (1.0, max(8, int(need * 2)))):
                row = drive(url, kind, share, args.seconds, in_flight)
                rows.append(row)
                print(
                    f"{kind:8} load {share:4.2f} in flight {in_flight:4d}: "
                    f"{row['accepted_per_second']:7.1f}/s = {row['share_of_ceiling']:.3f} "
                    f"of {row['ceiling_per_second']:.0f}/s, throttled "
                    f"{row['throttled_share']:.3f}, latency median "
                    f"{row['latency_median_s'] * 1000:.0f} ms (model "
                    f"{SMALL.median * args.dilation * 1000:.0f}) p99 "
                    f"{row['latency_p99_s'] * 1000:.0f} ms (model "
                    f"{SMALL.p99 * args.dilation * 1000:.0f}), endpoint CPU "
                    f"{row['endpoint_cpu_cores']:.2f} core",
                    flush=True,
                )
    print("saved", save(args.out, {"model": model, "rows": rows}))


if __name__ == "__main__":
    main()
