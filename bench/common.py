"""Shared benchmark plumbing: a loopback endpoint in a process of its own, timing, reports."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests

from loopback.net import LOOPBACK_CREDENTIALS, free_port

RESULTS = Path(__file__).resolve().parent / "results"


#: The dilation each family's benchmark uses on the S3 model by default: the largest ceiling
#: it meets, divided by D, must leave the endpoint's CPU under half a core (docs/loopback.md).
#: "bytes": benchmarks of a few large transfers (the vault thaw), bound by bandwidth per
#: connection (90 MB/s / D), not by request ceilings.
DILATION = {"restore": 10.0, "read": 80.0, "write": 80.0, "bytes": 10.0, "list": 40.0}


def add_model_arguments(parser: Any, family: str) -> None:
    """``--no-model`` and ``--dilation D``: every benchmark runs on the S3 model by default."""
    parser.add_argument(
        "--no-model",
        action="store_true",
        help="run on the bare endpoint (no latency, no ceilings): measures its CPU, not S3's",
    )
    parser.add_argument(
        "--dilation",
        type=float,
        default=DILATION[family],
        help=f"the S3 model's dilation (default {DILATION[family]:g} for this benchmark)",
    )


def model_of(args: Any) -> dict[str, Any]:
    """``endpoint_process`` keyword arguments for the parsed model arguments."""
    return {} if args.no_model else {"model": "s3", "dilation": args.dilation}


def ceiling(kind: str, dilation: float) -> float:
    """The model's ceiling of ``kind`` (read, write, restore), requests/s at ``dilation``."""
    from loopback.model import READS_PER_SECOND, RESTORES_PER_SECOND, WRITES_PER_SECOND

    return {
        "read": READS_PER_SECOND,
        "write": WRITES_PER_SECOND,
        "restore": RESTORES_PER_SECOND,
    }[kind] / dilation


def cpu_seconds() -> float:
    """CPU this process and its finished children used so far (user + system)."""
    import resource

    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


@contextmanager
def metered(url: str) -> Iterator[dict[str, Any]]:
    """What the block cost, in the dict it yields once the block ends: ``seconds``,
    ``client_cpu_s`` (this process and its finished children: the tool's; a Prefect server
    still running is not counted), ``requests`` sent and ``throttled`` answers at the endpoint
    at ``url``, and ``seen``, its counts by operation."""
    reset_counts(url)
    cpu, began = cpu_seconds(), time.monotonic()
    cost: dict[str, Any] = {}
    yield cost
    seconds, cpu = time.monotonic() - began, cpu_seconds() - cpu
    seen = counts(url)
    cost |= {
        "seconds": seconds,
        "client_cpu_s": cpu,
        "requests": requests_sent(seen),
        "throttled": throttled(seen),
        "seen": seen,
    }


def measured(url: str, run: Any, objects: int, kind: str, dilation: float | None) -> dict[str, Any]:
    """Run ``run()`` once and report it as every benchmark does on the model: the rate, its
    share of the ``kind`` ceiling at ``dilation`` (None: no model), throttled answers,
    requests per object, client CPU per object and the S3-equivalent rate (rate x D)."""
    with metered(url) as cost:
        run()
    rate = objects / cost["seconds"]
    row: dict[str, Any] = {
        "seconds": round(cost["seconds"], 2),
        "per_second": round(rate, 1),
        "requests_per_object": round(cost["requests"] / objects, 4),
        "throttled": cost["throttled"],
        "client_cpu_ms_per_object": round(cost["client_cpu_s"] * 1000 / objects, 3),
        "requests": cost["seen"],
    }
    if dilation:
        row["share_of_ceiling"] = round(rate / ceiling(kind, dilation), 3)
        row["s3_equivalent_per_second"] = round(rate * dilation, 1)
    return row


def throttled(seen: dict[str, int]) -> int:
    """The answers that were 503 SlowDown, from a ``/_loopback/counts`` snapshot."""
    return sum(v for k, v in seen.items() if k.startswith("SlowDown:"))


def requests_sent(seen: dict[str, int]) -> int:
    """Every request counted, throttled ones once (they are counted twice)."""
    return sum(v for k, v in seen.items() if not k.startswith("SlowDown:"))


@contextmanager
def endpoint_process(
    own_cpu: bool = False, model: str | None = None, dilation: float = 10.0, **durations: float
) -> Iterator[str]:
    """``python -m loopback serve`` in its own process (as a real endpoint would be), with
    S3's speed model when ``model="s3"``.

    ``own_cpu``: the endpoint gets the first CPU and this process (with everything it starts
    from now on: tools, Prefect's server) the others, as S3 runs on machines of its own.
    Sharing the CPUs, a tool's own CPU time slows the endpoint it is measured against.
    """
    port = free_port()
    args = [sys.executable, "-m", "loopback", "serve", "--port", str(port)]
    if model:
        args += ["--model", model, "--dilation", str(dilation)]
    for tier, seconds in durations.items():
        args += [f"--{tier.lower()}-seconds", str(seconds)]
    endpoint_cpus, tool_cpus = split_cpus() if own_cpu else (None, None)
    proc = subprocess.Popen(
        args,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        preexec_fn=(lambda: os.sched_setaffinity(0, endpoint_cpus)) if endpoint_cpus else None,
    )
    if tool_cpus:
        os.sched_setaffinity(0, tool_cpus)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                requests.get(f"{url}/_loopback/counts", timeout=1).raise_for_status()
                break
            except requests.RequestException:
                time.sleep(0.1)
        os.environ.update({"AWS_ENDPOINT_URL": url, **LOOPBACK_CREDENTIALS})
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a million keys in memory can take longer to go
            proc.kill()
            proc.wait()


def split_cpus() -> tuple[set[int], set[int]]:
    """The endpoint's CPU and the tools' CPUs (an error on a machine with one)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--endpoint-cpu needs two CPUs or more")
    return {cpus[0]}, set(cpus[1:])


@contextmanager
def prefect_server_process(home: Path) -> Iterator[str]:
    """``prefect server start`` in its own process, and this process pointed at it.

    That is how flows run in production (a worker's flow run talks to a server), and
    it keeps Prefect's server app out of the measured process: in ephemeral mode the
    client imports it (~80 MiB) even though the server runs in a child process.
    """
    from deployments.ui import start_server, stop, wait_healthy

    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    server = start_server(port, home, home / "server.log")
    try:
        wait_healthy(api)
        os.environ["PREFECT_API_URL"] = api
        yield api
    finally:
        os.environ.pop("PREFECT_API_URL", None)
        stop(server.pid)


def empty_prefix(s3, bucket: str, prefix: str = "") -> None:
    """Delete every object under ``prefix`` (benchmark buckets only), 1,000 per request."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
        if keys:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": keys})


def drop_bucket(s3, bucket: str) -> None:
    """Empty and delete a benchmark bucket (moto slows down as it holds more objects)."""
    empty_prefix(s3, bucket)
    s3.delete_bucket(Bucket=bucket)


def counts(url: str) -> dict[str, int]:
    return requests.get(f"{url}/_loopback/counts", timeout=30).json()


def span(url: str, name: str) -> float:
    """Seconds from the first admitted request named ``name`` (an operation, or
    ``"<operation> <bucket>"``) to the last, as the endpoint at ``url`` saw them."""
    first, last = requests.get(f"{url}/_loopback/spans", timeout=30).json().get(name, (0.0, 0.0))
    return max(last - first, 1e-3)


def admitted(seen: dict[str, int], operation: str) -> int:
    """Requests of ``operation`` the endpoint served (not throttled), from a counts snapshot."""
    return seen.get(operation, 0) - seen.get(f"SlowDown:{operation}", 0)


def reset_counts(url: str) -> None:
    requests.post(f"{url}/_loopback/counts/reset", timeout=30).raise_for_status()


def bulk_put(
    url: str, bucket: str, prefix: str, count: int, storage_class: str, size: int = 0
) -> None:
    """``count`` objects ``prefix0000000`` … in the endpoint's store: one byte each, or
    ``size`` bytes of synthetic image data."""
    requests.post(
        f"{url}/_loopback/bulk-put",
        params={
            "bucket": bucket,
            "prefix": prefix,
            "count": count,
            "storage_class": storage_class,
            "size": size,
        },
        timeout=600,
    ).raise_for_status()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def save(name: str, report: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = RESULTS / f"{name}-{stamp}.json"
    report = {"date": stamp, "machine": f"{os.cpu_count()} cores", **report}
    path.write_text(json.dumps(report, indent=2))
    return path
