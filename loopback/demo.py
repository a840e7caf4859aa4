"""``make demo``: archive the example plates end to end on a loopback S3 endpoint.

Starts moto's S3 server on 127.0.0.1, seeds the plates of plates.csv.example
in the established layout, runs ``archive_plates(..., delete_source=True)`` on
Prefect's embedded API, prints the per-plate summary, then proves the
tarballs read back with GNU tar and extract to the original bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

PROJECT, BATCH = "2016_04_01_a549", "2016_04_01_Batch1"
LIVE, COLD = "imaging-live", "imaging-cold"
ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plates", default=str(ROOT / "plates.csv.example"))
    ap.add_argument("--images", type=int, default=48, help="images per plate")
    ap.add_argument("--image-kib", type=int, default=1024, help="size of each image")
    args = ap.parse_args(argv)

    from loopback import LoopbackS3
    from loopback.seed import PlateShape, seed_plates
    from tasks.formats.plates_csv import read_plates

    started = time.monotonic()
    with LoopbackS3() as endpoint, tempfile.TemporaryDirectory(prefix="coldflow-demo-") as tmp:
        os.environ.update(endpoint.environ())
        import boto3

        from flows.archive import archive_plates

        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=COLD)
        plates = read_plates(args.plates)
        shape = PlateShape(
            images=args.images,
            image_bytes=args.image_kib * 1024,
            illum_bytes=512 * 1024,
            csv_bytes=256 * 1024,
            backend_bytes=8 * 1024 * 1024,
        )
        n, nbytes = seed_plates(
            s3, LIVE, PROJECT, BATCH, [(p.plate_id, p.plate_id_full) for p in plates], shape
        )
        print(
            f"seeded {n} objects ({nbytes / 2**20:.1f} MiB) for {len(plates)} plates "
            f"at {endpoint.endpoint_url}"
        )
        originals = {
            o["Key"]: o["ETag"].strip('"')
            for page in s3.get_paginator("list_objects_v2").paginate(
                Bucket=LIVE, Prefix="projects/"
            )
            for o in page.get("Contents", [])
        }

        t = time.monotonic()
        summary = archive_plates(
            args.plates,
            PROJECT,
            BATCH,
            LIVE,
            COLD,
            scratch_dir=os.path.join(tmp, "scratch"),
            delete_source=True,
            max_parallel_plates=2,
        )
        archive_seconds = time.monotonic() - t
        print(
            f"\n{'plate':<12} {'status':<9} {'objects':>7} {'MiB':>7} {'tar MiB':>8} "
            f"{'deleted':>7}  {'s':>5}"
        )
        for r in summary:
            tar_mib = sum(b["bytes"] for b in r["tarballs"].values()) / 2**20
            print(
                f"{r['plate_id']:<12} {r['status']:<9} {r['objects']:>7} "
                f"{r['bytes'] / 2**20:>7.1f} {tar_mib:>8.1f} {r['deleted']:>7}  "
                f"{r['finished'] - r['started']:>5.1f}"
            )
        left = [
            k
            for k in originals
            if "/workspace/backup/" not in k
            and s3.list_objects_v2(Bucket=LIVE, Prefix=k).get("KeyCount")
        ]
        if left:
            print(f"FAILED: {len(left)} source objects still in the live bucket")
            return 1

        checked = read_back_with_gnu_tar(s3, summary, originals, Path(tmp))
        total = time.monotonic() - started
        print(
            f"\nGNU tar listed and extracted {checked} files; every one matches its original MD5."
        )
        print(
            f"archive_plates: {archive_seconds:.1f} s for {nbytes / 2**20:.1f} MiB "
            f"({nbytes / 2**20 / archive_seconds:.1f} MiB/s); demo wall time {total:.1f} s"
        )
    return 0


def read_back_with_gnu_tar(s3, summary: list[dict], originals: dict[str, str], tmp: Path) -> int:
    """Restore (instant here), download and extract every tarball with GNU tar; compare MD5s."""
    out = tmp / "extracted"
    out.mkdir()
    for row in summary:
        for bundle in row["tarballs"].values():
            s3.restore_object(Bucket=COLD, Key=bundle["key"], RestoreRequest={"Days": 1})
            path = tmp / Path(bundle["key"]).name
            s3.download_file(COLD, bundle["key"], str(path))
            subprocess.run(["tar", "-tzf", str(path)], check=True, capture_output=True)
            subprocess.run(
                ["tar", "-xzf", str(path), "--strip-components=1", "-C", str(out)], check=True
            )
            path.unlink()
    checked = 0
    for key, etag in originals.items():
        if "/workspace/backup/" in key:
            continue
        data = (out / key.removeprefix("projects/")).read_bytes()
        if hashlib.md5(data).hexdigest() != etag:
            raise SystemExit(f"FAILED: {key} differs from its original")
        checked += 1
    return checked


if __name__ == "__main__":
    sys.exit(main())
