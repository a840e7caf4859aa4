"""Read-after-write listings: a listing that starts after a write (or delete) completed shows
it, however many writers and listers run at once (S3 is strongly consistent since 2020)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import boto3
from botocore.config import Config

LIVE = "live-bucket"


def listed(client, prefix: str) -> set[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=LIVE, Prefix=prefix)
    return {o["Key"] for page in pages for o in page.get("Contents", ())}


def test_listings_see_every_completed_write_under_concurrency(s3, loopback):
    loopback.bulk_put(LIVE, (f"shared/{i:05d}" for i in range(3000)))  # pages to list
    client = boto3.client(
        "s3", endpoint_url=loopback.endpoint_url, config=Config(max_pool_connections=32)
    )
    misses: list[str] = []

    def writer(n: int) -> None:
        for i in range(12):
            key = f"shared/w{n:02d}-{i:03d}"
            client.put_object(Bucket=LIVE, Key=key, Body=b"x")
            if key not in listed(client, f"shared/w{n:02d}"):
                misses.append(f"written, not listed: {key}")
            client.delete_object(Bucket=LIVE, Key=key)
            if key in listed(client, f"shared/w{n:02d}"):
                misses.append(f"deleted, still listed: {key}")

    def lister(_: int) -> None:
        for _ in range(4):
            listed(client, "shared/")

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(writer, n) for n in range(10)]
        futures += [pool.submit(lister, n) for n in range(6)]
        for future in futures:
            future.result()
    assert misses == []
    assert len(listed(client, "shared/")) == 3000
