"""One archive_plates call in a process of its own, as a worker runs a flow run.

    python -m bench.archive_run PLATES_CSV SCRATCH [--streaming] [--parallel N]

Prints the call's wall time and the plates' statuses as one JSON line; the caller
measures the process's memory. Project, batch and buckets are the benchmark's.
"""

from __future__ import annotations

import argparse
import json
import time

from bench.archive_bench import BATCH, COLD, LIVE, PROJECT


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("plates_csv")
    ap.add_argument("scratch")
    ap.add_argument("--streaming", action="store_true")
    ap.add_argument("--parallel", type=int, default=1)
    args = ap.parse_args(argv)
    from flows.archive import archive_plates

    t = time.monotonic()
    rows = archive_plates(
        args.plates_csv,
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=args.scratch,
        max_parallel_plates=args.parallel,
        streaming=args.streaming,
    )
    seconds = time.monotonic() - t
    steps: dict[str, float] = {}
    for row in rows:
        for step, spent in (row.get("seconds") or {}).items():
            steps[step] = round(steps.get(step, 0.0) + spent, 2)
    print(json.dumps({"seconds": seconds, "statuses": [r["status"] for r in rows], "steps": steps}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
