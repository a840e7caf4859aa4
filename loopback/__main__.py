"""Run the loopback endpoint in the foreground.

python -m loopback serve --port 5055 [--model s3 [--dilation 10]] [--standard-seconds 5]
    [--vault-standard-seconds 5]
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading

from loopback.server import LoopbackS3


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m loopback")
    sub = ap.add_subparsers(dest="cmd", required=True)
    serve = sub.add_parser("serve", help="run the loopback S3 endpoint until interrupted")
    serve.add_argument("--port", type=int, default=5055)
    serve.add_argument(
        "--model",
        choices=["s3"],
        default=None,
        help="answer at S3's latency and request ceilings (503 SlowDown above a ceiling)",
    )
    serve.add_argument(
        "--dilation",
        type=float,
        default=10.0,
        help="with --model: latencies x D, ceilings and transfer rates / D (1: S3's own)",
    )
    for tier in ("expedited", "standard", "bulk"):
        serve.add_argument(
            f"--{tier}-seconds",
            type=float,
            default=0.0,
            help=f"how long a {tier.title()} restore stays in progress",
        )
    for tier in ("expedited", "standard", "bulk"):
        serve.add_argument(
            f"--vault-{tier}-seconds",
            type=float,
            default=0.0,
            help=f"how long a {tier.title()} Glacier vault retrieval job runs",
        )
    serve.add_argument(
        "--vault-output-hours",
        type=float,
        default=24.0,
        help="how long a finished vault job's output stays downloadable",
    )
    serve.add_argument(
        "--vault-capacity-errors",
        type=int,
        default=0,
        help="how many Expedited vault jobs to refuse with InsufficientCapacityException",
    )
    args = ap.parse_args(argv)
    server = LoopbackS3(port=args.port, model=args.model, dilation=args.dilation).start()
    server.tiers.durations.update(
        Expedited=args.expedited_seconds, Standard=args.standard_seconds, Bulk=args.bulk_seconds
    )
    server.vaults.durations.update(
        Expedited=args.vault_expedited_seconds,
        Standard=args.vault_standard_seconds,
        Bulk=args.vault_bulk_seconds,
    )
    server.vaults.output_window = args.vault_output_hours * 3600
    server.vaults.capacity_errors = args.vault_capacity_errors
    print(server.endpoint_url, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
