"""The practical floor for archiving a plate on this machine: no verification, no Prefect.

    python -m bench.raw_pipeline BUCKET PREFIX COLD_BUCKET KEY [--level 3] [--threads 2]
        [--get-threads 16]

List the prefix; GET every object, 16 at a time (``--get-threads``), into memory; tar them
with the same compressor on the same threads as archive_plates (ISA-L gzip, level 3, 2
threads); upload the tarball as a multipart upload, 8 parts of 8 MiB in flight. One stage
after another, as the simplest script would. Prints the stage times as one JSON line;
bench.archive_bench compares archive_plates with it.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import time
from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config
from isal import igzip_threaded

MIB = 1024 * 1024
PART = 8 * MIB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("bucket")
    ap.add_argument("prefix")
    ap.add_argument("cold_bucket")
    ap.add_argument("key")
    ap.add_argument("--level", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--get-threads", type=int, default=16)
    args = ap.parse_args(argv)
    s3 = boto3.client("s3", config=Config(max_pool_connections=max(10, args.get_threads)))
    seconds: dict[str, float] = {}

    t = time.monotonic()
    start = t
    keys = [
        o["Key"]
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=args.bucket, Prefix=args.prefix
        )
        for o in page.get("Contents", ())
    ]
    seconds["list"] = time.monotonic() - t

    t = time.monotonic()
    with ThreadPoolExecutor(args.get_threads) as pool:
        bodies = list(
            pool.map(lambda k: s3.get_object(Bucket=args.bucket, Key=k)["Body"].read(), keys)
        )
    seconds["get"] = time.monotonic() - t

    t = time.monotonic()
    packed = io.BytesIO()
    with (
        igzip_threaded.open(packed, "wb", compresslevel=args.level, threads=args.threads) as gz,
        tarfile.open(fileobj=gz, mode="w|", format=tarfile.GNU_FORMAT) as tar,
    ):
        for key, body in zip(keys, bodies, strict=True):
            info = tarfile.TarInfo(key)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    data = packed.getvalue()
    del bodies
    seconds["tar_gzip"] = time.monotonic() - t

    t = time.monotonic()
    upload = s3.create_multipart_upload(Bucket=args.cold_bucket, Key=args.key)["UploadId"]

    def put(number: int) -> dict:
        chunk = data[(number - 1) * PART : number * PART]
        answer = s3.upload_part(
            Bucket=args.cold_bucket,
            Key=args.key,
            UploadId=upload,
            PartNumber=number,
            Body=chunk,
        )
        return {"PartNumber": number, "ETag": answer["ETag"]}

    with ThreadPoolExecutor(8) as pool:
        parts = list(pool.map(put, range(1, -(-len(data) // PART) + 1)))
    s3.complete_multipart_upload(
        Bucket=args.cold_bucket, Key=args.key, UploadId=upload, MultipartUpload={"Parts": parts}
    )
    seconds["put"] = time.monotonic() - t
    seconds["total"] = time.monotonic() - start
    print(
        json.dumps(
            {
                "seconds": seconds["total"],
                "stages": {k: round(v, 2) for k, v in seconds.items()},
                "objects": len(keys),
                "tarball_mib": round(len(data) / MIB, 1),
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
