"""A dry run over a million keys: memory, Prefect task runs and time of ``restore_prefix``
with ``dry_run=True``, on 10,000 and 1,000,000 GLACIER keys, parallel and serial listings.

    python -m bench.list_memory [--small 10000] [--large 1000000]

One loopback endpoint in a process of its own (bare: no latency model, a million keys on the
model would take hours), a Prefect server in another, and each flow run in a process of its
own, so its peak RSS is the flow's alone. Serial runs set ``COLDFLOW_LIST_WORKERS=1`` (one
page after another). Reported per run: seconds, peak RSS of the flow's process, task runs of
the flow run, and the objects the dry run counted.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3

from bench.batch_bench import task_runs
from bench.common import bulk_put, endpoint_process, prefect_server_process, save

BUCKET = "bench-list-memory"


def child(prefix: str, work_dir: str) -> None:
    """Run the dry run here and print what it cost, as JSON on the last line."""
    from flows.restore import restore_prefix

    began = time.monotonic()
    state = restore_prefix(BUCKET, prefix, dry_run=True, work_dir=work_dir, return_state=True)
    seconds = time.monotonic() - began
    result = state.result()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak, 1),
        "flow_run_id": str(state.state_details.flow_run_id),
        "counts": {k: v for k, v in result.items() if isinstance(v, int)},
    }
    print(json.dumps(report))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", type=int, default=10_000)
    ap.add_argument("--large", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=2, metavar=("PREFIX", "WORK_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    runs: list[dict] = []
    with (
        tempfile.TemporaryDirectory() as tmp,
        endpoint_process(own_cpu=(os.cpu_count() or 1) > 1) as url,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        sizes = {"small/": args.small, "large/": args.large}
        for prefix, n in sizes.items():
            bulk_put(url, BUCKET, prefix, n, "GLACIER")
        for listing, workers in (("parallel", ""), ("serial", "1")):
            for prefix, n in sizes.items():
                env = {**os.environ}
                if workers:
                    env["COLDFLOW_LIST_WORKERS"] = workers
                out = subprocess.run(
                    [sys.executable, "-m", "bench.list_memory", "--child", prefix, tmp],
                    env=env,
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                row = json.loads(out.strip().splitlines()[-1])
                row |= {"keys": n, "listing": listing}
                row["task_runs"] = task_runs(row.pop("flow_run_id"))
                runs.append(row)
                print(
                    f"{listing:8s} {n:>9,} keys  {row['seconds']:7.1f} s  "
                    f"peak RSS {row['peak_rss_mib']:6.1f} MiB  {row['task_runs']} task runs  "
                    f"{row['counts']}",
                    flush=True,
                )
    for listing in ("parallel", "serial"):
        small, large = (r for r in runs if r["listing"] == listing)
        growth = large["peak_rss_mib"] / small["peak_rss_mib"] - 1
        print(f"{listing}: peak RSS {growth:+.1%} from {small['keys']:,} to {large['keys']:,} keys")
    print(f"saved {save('list-memory', {'runs': runs})}")


if __name__ == "__main__":
    main()
