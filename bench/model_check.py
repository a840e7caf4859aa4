"""Does the loopback's S3 model hold what it states? Ceilings, latency, and the endpoint's CPU.

    python -m bench.model_check [--dilation 10] [--seconds 20] [--kinds read,write,restore]

For each ceiling, a client with twice the requests in flight that Little's law asks for
(ceiling x latency; after a SlowDown a thread waits one median latency) sends HEADs (read),
PUTs of 1 byte (write) or RestoreObject (restore) at an endpoint in a process of its own for
``--seconds``, and reports: requests accepted per second against the ceiling, the share
throttled, the latency of accepted requests (median, p90, p99) against the model's, and the
endpoint's CPU (share of one core, from /proc). A run at a quarter of the ceiling checks the
latency unthrottled.

Rates and CPU are taken over a window: from ``WARMUP`` seconds after the start (the burst a
token bucket allows at first is not the ceiling) to the end of ``--seconds``, counting the
requests *sent* in it. The requests still in flight at the end are waited for but not timed
into the rate: at D = 40 the model's latency tail reaches several seconds, and dividing by the
time to drain it would understate the rate by a third.
"""

from __future__ import annotations

import argparse
import math
import random
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
    requests_sent,
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
    sent_at: list[tuple[float, bool]] = []  # (when sent, accepted) of every request
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    interval = in_flight / target if rate_share < 1 else 0.0

    def one(i: int) -> None:
        n = 0
        rng = random.Random(i)
        # staggered starts, then an open schedule: a thread that fell behind (a slow answer)
        # sends its next request at once, so the load offered is the load asked for
        start = time.monotonic() + i * (interval or 1.0 / target) / in_flight
        time.sleep(max(0.0, start - time.monotonic()))
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
                    sent_at.append((began, True))
            except ClientError as exc:
                if exc.response["Error"]["Code"] not in (
                    "SlowDown",
                    "503",
                    "RestoreAlreadyInProgress",
                ):
                    raise
                with lock:
                    sent_at.append((began, False))
                # a client that backs off with jitter, as botocore's retries do; without it,
                # every throttled thread comes back at the same instant, and such waves find
                # at most a burst's worth of tokens however long they waited
                time.sleep(rng.uniform(0.0, 2.0) * SMALL.median * DILATION[0])
            n += 1
            if interval:
                time.sleep(max(0.0, start + n * interval - time.monotonic()))

    reset_counts(url)
    pid = _endpoint_pid(url)
    t0 = time.monotonic()
    begin = t0 + WARMUP
    cpu = [0.0, 0.0]

    def sample_cpu() -> None:
        time.sleep(max(0.0, begin - time.monotonic()))
        cpu[0] = _cpu_seconds(pid)
        time.sleep(max(0.0, stop - time.monotonic()))
        cpu[1] = _cpu_seconds(pid)

    sampler = threading.Thread(target=sample_cpu)
    sampler.start()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(one, range(in_flight)))
    sampler.join()
    window = stop - begin
    seen = counts(url)
    latencies.sort()
    in_window = [ok for when, ok in sent_at if begin <= when < stop]
    accepted = sum(in_window) / window
    return {
        "kind": kind,
        "load": rate_share,
        "in_flight": in_flight,
        "window_s": window,
        "accepted_per_second": accepted,
        "ceiling_per_second": ceiling(kind, DILATION[0]),
        "share_of_ceiling": accepted / ceiling(kind, DILATION[0]),
        "throttled_share": in_window.count(False) / max(1, len(in_window)),
        "endpoint_throttled_share": throttled(seen) / max(1, requests_sent(seen)),
        "latency_median_s": median(latencies),
        "latency_p90_s": quantile(latencies, 0.90)[0],
        "latency_p99_s": quantile(latencies, 0.99)[0],
        "latency_p99_interval_s": quantile(latencies, 0.99)[1:],
        "endpoint_cpu_cores": (cpu[1] - cpu[0]) / window,
    }


DILATION = [10.0]
#: Seconds at the start of a run left out of its rates: the token bucket's burst, and threads
#: whose staggered starts are still coming in.
WARMUP = 3.0


def quantile(ordered: list[float], q: float) -> tuple[float, float, float]:
    """The ``q`` quantile of sorted samples with its 95 % interval (the order statistics
    1.96 binomial standard deviations either side): a p99 from a few thousand samples is only
    good to several per cent, which the interval says."""
    n = len(ordered)
    if not n:
        return (float("nan"),) * 3
    spread = 1.96 * math.sqrt(n * q * (1 - q))
    at = lambda rank: ordered[min(n - 1, max(0, int(rank)))]  # noqa: E731
    return at(n * q), at(n * q - spread), at(n * q + spread)


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
            # the quarter load runs three times as long: its p99 needs the samples
            for share, in_flight, seconds in (
                (0.25, max(4, int(need / 2)), 3 * args.seconds),
                (1.0, max(8, int(need * 2)), args.seconds),
            ):
                row = drive(url, kind, share, seconds, in_flight)
                rows.append(row)
                print(
                    f"{kind:8} load {share:4.2f} in flight {in_flight:4d}: "
                    f"{row['accepted_per_second']:7.1f}/s = {row['share_of_ceiling']:.3f} "
                    f"of {row['ceiling_per_second']:.0f}/s, throttled "
                    f"{row['throttled_share']:.3f}, latency median "
                    f"{row['latency_median_s'] * 1000:.0f} ms (model "
                    f"{SMALL.median * args.dilation * 1000:.0f}) p90 "
                    f"{row['latency_p90_s'] * 1000:.0f} ms (model "
                    f"{SMALL.quantile(0.90) * args.dilation * 1000:.0f}) p99 "
                    f"{row['latency_p99_s'] * 1000:.0f} ms "
                    f"[{row['latency_p99_interval_s'][0] * 1000:.0f}-"
                    f"{row['latency_p99_interval_s'][1] * 1000:.0f}] (model "
                    f"{SMALL.p99 * args.dilation * 1000:.0f}), endpoint CPU "
                    f"{row['endpoint_cpu_cores']:.2f} core",
                    flush=True,
                )
    print("saved", save(args.out, {"model": model, "rows": rows}))


if __name__ == "__main__":
    main()
