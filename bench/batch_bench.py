"""Bulk restores: bulk_restore (one S3 Batch Operations job) against restore_prefix (a
request per object from coldflow's own tasks), on the same number of archived objects.

    python -m bench.batch_bench [--objects 50000] [--runs 1]

One loopback endpoint in a process of its own, a Prefect server in another. Each run, each
flow restores ``--objects`` GLACIER objects in a bucket of its own and waits until they are
readable. Reported: wall time, requests per object the flow's process sent (Batch
Operations' own restores are the service's, not ours), throttled answers, client CPU per
object (this process, Prefect's server excluded), and Prefect task runs per flow run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from pathlib import Path

import boto3

from bench.common import (
    add_model_arguments,
    bulk_put,
    drop_bucket,
    endpoint_process,
    median,
    metered,
    model_of,
    prefect_server_process,
    requests_sent,
    save,
    throttled,
)

PREFIX = "objects/"


def task_runs(flow_run_id) -> int:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async def count() -> int:
        async with get_client() as client:
            runs = await client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            return len(runs)

    return asyncio.run(count())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--objects", type=int, default=50_000)
    ap.add_argument("--runs", type=int, default=1)
    add_model_arguments(ap, "restore")
    args = ap.parse_args(argv)
    n = args.objects
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    report: dict = {"objects": n, "runs": args.runs, "flows": {}}
    with (
        tempfile.TemporaryDirectory() as tmp,
        endpoint_process(**model_of(args)) as url,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        s3 = boto3.client("s3")
        from flows.batch_restore import bulk_restore
        from flows.restore import restore_prefix

        wait = {"poll_interval": 1.0, "max_poll_interval": 4.0, "work_dir": tmp}
        flows = {
            "bulk_restore": lambda b: bulk_restore(b, PREFIX, return_state=True, **wait),
            "restore_prefix": lambda b: restore_prefix(b, PREFIX, return_state=True, **wait),
        }
        rows: dict[str, list[dict]] = {name: [] for name in flows}
        for i in range(args.runs):
            for t_index, (name, run) in enumerate(flows.items()):
                bucket = f"batch-bench-{i}-{t_index}"
                s3.create_bucket(Bucket=bucket)
                bulk_put(url, bucket, PREFIX, n, "GLACIER")
                with metered(url) as cost:
                    state = run(bucket)
                result = state.result()
                rows[name].append(
                    {
                        "seconds": cost["seconds"],
                        "client_cpu_ms_per_object": cost["client_cpu_s"] * 1000 / n,
                        "requests": cost["seen"],
                        "task_runs": task_runs(state.state_details.flow_run_id),
                        "restored": result["ready"] if "ready" in result else result["restored"],
                    }
                )
                drop_bucket(s3, bucket)
                print(f"run {i + 1} {name:<16} {cost['seconds']:8.1f} s", flush=True)
        for name, runs in rows.items():
            made = runs[-1]["requests"]
            report["flows"][name] = {
                "median_seconds": round(median([r["seconds"] for r in runs]), 2),
                "requests_per_object": round(requests_sent(made) / n, 4),
                "throttled": throttled(made),
                "client_cpu_ms_per_object": round(
                    median([r["client_cpu_ms_per_object"] for r in runs]), 3
                ),
                "task_runs": runs[-1]["task_runs"],
                "restored": runs[-1]["restored"],
                "requests": made,
            }
    for name, row in report["flows"].items():
        print(
            f"{name:<16} {row['median_seconds']:>8.1f} s  {row['requests_per_object']:.4f} "
            f"requests/object  throttled {row['throttled']}  "
            f"client CPU {row['client_cpu_ms_per_object']:.3f} ms/object  "
            f"{row['task_runs']} task runs  {row['restored']} restored"
        )
    print(f"saved {save('batch', report)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
