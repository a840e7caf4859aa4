"""Listing speed: a serial boto3 paginator against coldflow's parallel listing by key range.

    python -m bench.list_bench [--keys 100000] [--runs 2] [--dilation 40] [--workers 16]

On one loopback endpoint in a process of its own (a CPU of its own) with S3's speed model, a
prefix of ``--keys`` keys is listed by each tool in turn, ``--runs`` rounds. The paginator runs
on a stock boto3 client; coldflow's listing on the client flows list with
(:func:`tasks.core.clients.s3_client`: timestamps parsed by the standard library, not
dateutil, ~40 ms of client CPU a page against ~80). Reported per tool: median seconds,
speed-up over the paginator, ListObjects requests and their ratio to the serial listing's
pages, client CPU a page, and whether the entries (keys, sizes, ETags) and their order are
identical to the paginator's.

``--simulate SECONDS`` measures the cutting alone: an in-process stand-in for ListObjectsV2
over sorted keys, every page taking exactly SECONDS, no endpoint (so neither its CPU nor the
model's latency tail decides); serial time is pages × SECONDS. With ``--tail`` each page's
latency is drawn instead from the model's listing latency (lognormal, p99 five times the
median, median SECONDS; seeded per round), and serial time is pages × that distribution's
mean: the cutting against the latency tail, still without the endpoint's and botocore's CPU.
``--runs`` rounds, medians.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import threading
import time
from collections.abc import Callable

import boto3
from botocore.config import Config

from bench.common import (
    add_model_arguments,
    bulk_put,
    counts,
    endpoint_process,
    median,
    model_of,
    reset_counts,
    save,
)
from tasks.core.clients import s3_client
from tasks.core.listing import list_objects

BUCKET, PREFIX = "bench-list", "plates/many/"


def serial(s3) -> list[tuple]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=PREFIX)
    return [(o["Key"], o["Size"], o["ETag"]) for p in pages for o in p.get("Contents", [])]


def parallel(s3, workers: int) -> list[tuple]:
    return [
        (o["Key"], o["Size"], o["ETag"]) for o in list_objects(s3, BUCKET, PREFIX, workers=workers)
    ]


class _Pages:
    """ListObjectsV2 over a sorted key list, each page taking ``latency()`` seconds."""

    def __init__(self, keys: list[str], latency: Callable[[], float]) -> None:
        self.keys, self.latency, self.requests = keys, latency, 0
        self.lock = threading.Lock()

    def list_objects_v2(self, Bucket: str, Prefix: str, MaxKeys: int, StartAfter: str = ""):
        import bisect

        with self.lock:
            self.requests += 1
            seconds = self.latency()
        time.sleep(seconds)
        i = bisect.bisect_right(self.keys, StartAfter) if StartAfter else 0
        page = self.keys[i : i + MaxKeys]
        return {
            "Contents": [{"Key": k, "Size": 1, "ETag": '"x"'} for k in page],
            "IsTruncated": i + MaxKeys < len(self.keys),
        }


def simulate(keys: int, latency: float, workers: int, tail: bool = False, runs: int = 1) -> None:
    import hashlib

    from loopback.model import LISTING

    shapes = {
        "counted": [f"{PREFIX}{i:07d}" for i in range(keys)],
        "hashed": sorted(PREFIX + hashlib.sha1(str(i).encode()).hexdigest() for i in range(keys)),
    }
    pages = -(-keys // 1000)
    scale = latency / LISTING.median
    mean = latency * math.exp(LISTING.sigma**2 / 2) if tail else latency
    for shape, names in shapes.items():
        ratios, sent = [], []
        for round_ in range(runs):
            rng = random.Random(round_)
            draw = (lambda r=rng: LISTING.draw(r) * scale) if tail else (lambda: latency)
            client = _Pages(names, draw)
            t = time.monotonic()
            got = [o["Key"] for o in list_objects(client, BUCKET, PREFIX, workers=workers)]
            seconds = time.monotonic() - t
            assert got == names
            ratios.append(pages * mean / seconds)
            sent.append(client.requests / pages)
        print(
            f"{shape:8s} {keys} keys: {median(ratios):5.1f}x one page after another "
            f"({', '.join(f'{r:.1f}' for r in ratios)}), "
            f"{median(sent):.3f} requests per serial page"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=100_000)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--workers", type=int, default=24)
    ap.add_argument("--simulate", type=float, metavar="SECONDS")
    ap.add_argument("--tail", action="store_true", help="with --simulate: the model's latency tail")
    add_model_arguments(ap, "list")
    args = ap.parse_args()
    if args.simulate:
        simulate(args.keys, args.simulate, args.workers, args.tail, args.runs)
        return
    with endpoint_process(own_cpu=(os.cpu_count() or 1) > 1, **model_of(args)) as url:
        s3 = boto3.client("s3", endpoint_url=url, config=Config(max_pool_connections=64))
        s3.create_bucket(Bucket=BUCKET)
        bulk_put(url, BUCKET, PREFIX, args.keys, "STANDARD")
        coldflow = s3_client()
        tools = {
            "paginator": lambda: serial(s3),
            "parallel": lambda: parallel(coldflow, args.workers),
        }
        seen: dict[str, list[float]] = {t: [] for t in tools}
        sent: dict[str, list[int]] = {t: [] for t in tools}
        cpu: dict[str, list[float]] = {t: [] for t in tools}
        reference = None
        for round_ in range(args.runs):
            for name, tool in tools.items():
                reset_counts(url)
                t, c = time.monotonic(), time.process_time()
                got = tool()
                seconds = time.monotonic() - t
                cpu[name].append(time.process_time() - c)
                n = counts(url).get("ListObjects", 0)
                reference = reference if reference is not None else got
                same = got == reference and len(got) == args.keys
                seen[name].append(seconds)
                sent[name].append(n)
                print(f"run {round_ + 1} {name:10s} {seconds:8.2f} s  {n:5d} requests  same {same}")
                if not same:
                    raise SystemExit(f"{name}: entries differ from the paginator's")
    pages = -(-args.keys // 1000)
    base = median(seen["paginator"])
    report = {"keys": args.keys, "dilation": None if args.no_model else args.dilation, "tools": {}}
    for name in tools:
        m = median(seen[name])
        requests_per_page = median([float(n) for n in sent[name]]) / pages
        report["tools"][name] = {
            "median_s": round(m, 2),
            "speedup": round(base / m, 2),
            "requests": sent[name],
            "requests_per_serial_page": round(requests_per_page, 3),
            "client_cpu_ms_per_page": round(1000 * median(cpu[name]) / pages, 1),
        }
        print(
            f"{name:10s} median {m:8.2f} s  {base / m:5.2f}x paginator  "
            f"requests {requests_per_page:.3f} of the serial pages  "
            f"client CPU {1000 * median(cpu[name]) / pages:.0f} ms a page"
        )
    print(f"saved {save('list', report)}")


if __name__ == "__main__":
    main()
