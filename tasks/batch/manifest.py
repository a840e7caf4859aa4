"""What goes into a Batch Operations restore job: the archived objects from a listing, a
user's CSV manifest or an S3 Inventory report, split by the restore they need, written as
Batch Operations CSV manifests (``Bucket,Key``, keys URL-encoded) and uploaded with their ETag.

Everything streams through files in a work folder, so a million keys never sit in memory.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from tasks.core.errors import InputError
from tasks.core.s3 import split_s3_uri
from tasks.restore.inventory import (
    ARCHIVED,
    NOT_ARCHIVED,
    Candidate,
    Inventory,
    Router,
    _head_classify,
    read_candidates,
)
from tasks.restore.pricing import IT_ARCHIVE_TIERS, NEEDS_DAYS

#: One job per kind of restore: GLACIER / DEEP_ARCHIVE need ``ExpirationInDays``;
#: Intelligent-Tiering archive access tiers refuse it.
KINDS = {"days": NEEDS_DAYS, "archive-access": IT_ARCHIVE_TIERS}
#: Where coldflow keeps its manifests and the jobs' completion reports.
FOLDER = "coldflow-batch"


def encode_key(key: str) -> str:
    """A key as Batch Operations manifests hold it: percent-encoded UTF-8 (``/`` kept).

    Spaces become ``%20`` and ``+`` becomes ``%2B``, which decode the same way whether the
    reader takes ``+`` for a space or not."""
    return quote(key, safe="/")


def decode_key(field: str) -> str:
    """A manifest or completion report key back to the S3 key."""
    return unquote(field)


def kind_of(archive_class: str) -> str:
    for kind, classes in KINDS.items():
        if archive_class in classes:
            return kind
    raise ValueError(f"not an archive class: {archive_class!r}")


@dataclass
class ManifestFile:
    """One manifest written locally: the objects of one kind of restore."""

    kind: str
    path: str
    objects: int
    bytes: int
    md5: str


def write_manifests(bucket: str, inventory: Inventory, workdir: Path) -> list[ManifestFile]:
    """Split the inventory's batches of archived objects into one manifest per kind."""
    files: dict[str, Any] = {}
    counts: dict[str, list[int]] = {}
    digests: dict[str, Any] = {}
    try:
        for batch in inventory.batches:
            for c in read_candidates(Path(batch)):
                kind = kind_of(c.archive_class)
                if kind not in files:
                    files[kind] = open(workdir / f"manifest-{kind}.csv", "w", encoding="utf-8")  # noqa: SIM115
                    counts[kind] = [0, 0]
                    digests[kind] = hashlib.md5()
                line = f"{bucket},{encode_key(c.key)}\n"
                files[kind].write(line)
                digests[kind].update(line.encode())
                counts[kind][0] += 1
                counts[kind][1] += c.size
    finally:
        for f in files.values():
            f.close()
    return [
        ManifestFile(kind, f.name, counts[kind][0], counts[kind][1], digests[kind].hexdigest())
        for kind, f in files.items()
    ]


def manifest_key(folder: str, manifest: ManifestFile) -> str:
    """Same content, same key: a re-run uploads over its own manifest (same ETag)."""
    return f"{folder}/manifest-{manifest.kind}-{manifest.md5}.csv"


def request_folder(bucket: str, source: str, tier: str, days: int) -> str:
    """The folder of one bulk request (manifests, job record, reports)."""
    digest = hashlib.sha256(f"{bucket}\n{source}\n{tier}\n{days}".encode()).hexdigest()[:16]
    return f"{FOLDER}/{digest}"


# -- where the keys come from ------------------------------------------------------------


def read_rows(path: str, client: Any) -> Iterator[list[str]]:
    """CSV rows of a local file or an ``s3://`` object (gzip when named .gz), streamed."""
    if path.startswith("s3://"):
        bucket, key = split_s3_uri(path)
        raw: Any = client.get_object(Bucket=bucket, Key=key)["Body"]
        if path.endswith(".gz"):
            raw = gzip.GzipFile(fileobj=raw)
        text = io.TextIOWrapper(raw, encoding="utf-8-sig", newline="")
    else:
        opener = gzip.open if path.endswith(".gz") else open
        text = opener(path, "rt", encoding="utf-8-sig", newline="")  # type: ignore[operator]
    with text:
        for row in csv.reader(text):
            if row and any(cell.strip() for cell in row):
                yield row


def manifest_keys(path: str, bucket: str, client: Any) -> Iterator[str]:
    """The keys of a user's CSV manifest (``Bucket,Key[,VersionId]``, keys URL-encoded, no
    header), refusing rows for another bucket."""
    for n, row in enumerate(read_rows(path, client), 1):
        if len(row) < 2:
            raise InputError(f"{path} line {n}: expected Bucket,Key, got {row!r}")
        if row[0] != bucket:
            if n == 1 and row[0].lower() == "bucket":
                continue  # a header line
            raise InputError(f"{path} line {n}: bucket {row[0]!r} is not {bucket!r}")
        yield decode_key(row[1])


def inventory_of_manifest(
    client: Any, bucket: str, keys: Iterable[str], workdir: Path, batch_size: int = 1000
) -> Inventory:
    """Classify the keys of a user's manifest by HEAD (their storage class and restore state
    are not in it), streaming."""
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory()
    router = Router(workdir, batch_size, inv)
    chunk: list[Candidate] = []

    def flush() -> None:
        inv.heads += len(chunk)
        for c, status, message in _head_classify(client, bucket, chunk, 16):
            router.route(c, status, message)
        chunk.clear()

    try:
        for key in keys:
            inv.listed += 1
            chunk.append(Candidate(key, 0, ""))
            if len(chunk) >= batch_size:
                flush()
        flush()
    finally:
        router.close()
    return inv


def inventory_of_s3_inventory(
    client: Any, bucket: str, manifest_json: str, workdir: Path, batch_size: int = 1000
) -> Inventory:
    """Classify the objects of an S3 Inventory report (``manifest.json`` of CSV files) from
    its StorageClass and IntelligentTieringAccessTier columns, with no request per object."""
    if not manifest_json.startswith("s3://"):
        with open(manifest_json, encoding="utf-8") as f:
            described = json.load(f)
        home = ""
    else:
        home_bucket, key = split_s3_uri(manifest_json)
        described = json.loads(client.get_object(Bucket=home_bucket, Key=key)["Body"].read())
        home = home_bucket
    if described.get("fileFormat", "CSV") != "CSV":
        raise InputError(
            f"{manifest_json}: only CSV inventories are read, not {described['fileFormat']}"
        )
    schema = [c.strip() for c in described.get("fileSchema", "").split(",")]
    if "Key" not in schema or "StorageClass" not in schema:
        raise InputError(f"{manifest_json}: the inventory needs Key and StorageClass columns")
    where = {name: i for i, name in enumerate(schema)}
    dest = described.get("destinationBucket", "").split(":::")[-1] or home
    workdir.mkdir(parents=True, exist_ok=True)
    inv = Inventory()
    router = Router(workdir, batch_size, inv)
    try:
        for part in described.get("files", []):
            source = f"s3://{dest}/{part['key']}" if dest else part["key"]
            for row in read_rows(source, client):
                if row[where.get("Bucket", 0)] != bucket:
                    continue
                inv.listed += 1
                key = decode_key(row[where["Key"]])
                size = int(row[where["Size"]]) if "Size" in where and row[where["Size"]] else 0
                storage_class = row[where["StorageClass"]]
                tier = (
                    row[where["IntelligentTieringAccessTier"]]
                    if "IntelligentTieringAccessTier" in where
                    else ""
                )
                archive_class = storage_class if storage_class in NEEDS_DAYS else ""
                if storage_class == "INTELLIGENT_TIERING" and tier in ("ARCHIVE", "DEEP_ARCHIVE"):
                    archive_class = f"{tier}_ACCESS"
                status = ARCHIVED if archive_class else NOT_ARCHIVED
                router.route(Candidate(key, size, storage_class, archive_class), status)
    finally:
        router.close()
    return inv
