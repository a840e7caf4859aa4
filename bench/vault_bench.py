"""Vault thaw throughput: coldflow's streamed, verified copy against the plain approach.

    python -m bench.vault_bench [--mib 256] [--runs 3]

One archive of ``--mib`` MiB in a vault on a loopback endpoint in a process of its own.
Each round, in turn, in fresh processes: the plain approach (``get_job_output`` of the
whole archive into memory, one ``put_object``), coldflow's copy step alone (ranged reads
checked against their tree-hash checksums, a multipart upload), and the whole
``thaw_vault_archives`` flow against a Prefect server. Reports MiB/s and peak RSS
(medians); the copy's memory must stay flat as the archive grows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3
from botocore.config import Config

from bench.common import (
    add_model_arguments,
    empty_prefix,
    endpoint_process,
    median,
    metered,
    model_of,
    prefect_server_process,
    save,
)
from loopback.model import CONNECTION_BYTES_PER_SECOND

MIB = 1024 * 1024
VAULT, BUCKET = "bench-vault", "bench-thawed"
MODES = ("plain", "copy", "flow")


def archive_body(mib: int) -> bytes:
    """Incompressible-looking bytes (the copy does not compress, only hashes)."""
    block = os.urandom(MIB)
    return block * mib + b"tail"


def run(mode: str, archive: str, key: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "bench.vault_run", mode, VAULT, archive, BUCKET, key],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    add_model_arguments(ap, "bytes")
    args = ap.parse_args(argv)
    results: dict[str, list[dict]] = {m: [] for m in MODES}
    with (
        endpoint_process(**model_of(args)) as url,
        tempfile.TemporaryDirectory() as tmp,
        prefect_server_process(Path(tmp) / "prefect"),
    ):
        # one upload of the whole archive: on the model a connection moves 90 MB/s / dilation
        slow = Config(read_timeout=3600, retries={"max_attempts": 1})
        glacier, s3 = boto3.client("glacier", config=slow), boto3.client("s3")
        glacier.create_vault(vaultName=VAULT)
        s3.create_bucket(Bucket=BUCKET)
        body = archive_body(args.mib)
        archive = glacier.upload_archive(vaultName=VAULT, body=body)["archiveId"]
        del body
        for round_ in range(args.runs):
            for mode in MODES:
                empty_prefix(s3, BUCKET)
                with metered(url) as cost:
                    got = run(mode, archive, f"{mode}-{round_}.bin")
                got |= {k: cost[k] for k in ("client_cpu_s", "requests", "throttled")}
                results[mode].append(got)
                print(
                    f"round {round_ + 1} {mode:>5}: {got['seconds']:6.2f} s, "
                    f"{args.mib / got['seconds']:7.1f} MiB/s, peak {got['peak_mib']:6.0f} MiB, "
                    f"{got['requests']} requests, throttled {got['throttled']}, "
                    f"client CPU {got['client_cpu_s']:.2f} s"
                )
    size = args.mib + 4 / MIB
    connection_rate = (CONNECTION_BYTES_PER_SECOND / args.dilation) if not args.no_model else 0
    report = {
        mode: {
            "median_seconds": round(median([r["seconds"] for r in rows]), 2),
            "mib_per_s": round(size / median([r["seconds"] for r in rows]), 1),
            "median_peak_mib": round(median([r["peak_mib"] for r in rows]), 0),
            "requests": median([r["requests"] for r in rows]),
            "throttled": max(r["throttled"] for r in rows),
            "client_cpu_s": round(median([r["client_cpu_s"] for r in rows]), 2),
            # the archive's bytes in and out, against one connection's rate on the model: the
            # plain approach's bound is 1.0 (one connection each way, one after the other)
            "vs_one_connection": round(
                2 * size * MIB / median([r["seconds"] for r in rows]) / connection_rate, 2
            )
            if connection_rate
            else None,
        }
        for mode, rows in results.items()
    }
    print(json.dumps(report, indent=2))
    print(f"saved {save('vault', {'mib': args.mib, 'runs': args.runs, 'results': report})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
