"""Synthetic Cell Painting plates in the established layout, for the demo, tests and benchmarks.

A seeded plate holds what a real one does, smaller: images under
``images/{plate_id_full}/`` (16-bit, smooth background plus noise, so gzip
squeezes them about as much as real ones), illumination functions under
``illum/{plate_id}/``, per-compartment CSVs under
``workspace/analysis/{batch_id}/{plate_id}/`` and a SQLite-sized blob under
``workspace/backend/{batch_id}/{plate_id}/``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

KIB = 1024
MIB = 1024 * KIB
WELLS = [f"{r}{c:02d}" for r in "ABCDEFGHIJKLMNOP" for c in range(1, 25)]
CHANNELS = ("DNA", "ER", "RNA", "AGP", "Mito")


@dataclass(frozen=True)
class PlateShape:
    """How much of each kind a synthetic plate holds."""

    images: int = 40
    image_bytes: int = 256 * KIB
    illum_bytes: int = 128 * KIB
    csv_bytes: int = 96 * KIB
    backend_bytes: int = 1 * MIB

    @property
    def total_bytes(self) -> int:
        return (
            self.images * self.image_bytes
            + len(CHANNELS) * self.illum_bytes
            + 5 * self.csv_bytes
            + self.backend_bytes
            + self.csv_bytes
        )

    @classmethod
    def of_size(cls, mib: float, image_mib: float = 4.0) -> PlateShape:
        """A plate of about ``mib`` MiB, mostly images of ``image_mib`` MiB each."""
        image_bytes = int(image_mib * MIB)
        rest = 5 * 2 * MIB + 6 * 3 * MIB + 24 * MIB
        images = max(1, int((mib * MIB - rest) // image_bytes))
        return cls(
            images=images,
            image_bytes=image_bytes,
            illum_bytes=2 * MIB,
            csv_bytes=3 * MIB,
            backend_bytes=24 * MIB,
        )


@cache
def _image_pool(nbytes: int, seed: int = 7) -> bytes:
    rng = np.random.default_rng(seed)
    side = 512
    yy, xx = np.mgrid[0:side, 0:side]
    field = 800 + 300 * np.sin(xx / 90.0) * np.cos(yy / 130.0)
    frames, made = [], 0
    while made < nbytes:
        frame = rng.poisson(field + rng.uniform(0, 200)).astype("<u2").tobytes()
        frames.append(frame)
        made += len(frame)
    return b"".join(frames)[:nbytes]


@cache
def _csv_pool(nbytes: int, seed: int = 3) -> bytes:
    rng = np.random.default_rng(seed)
    rows = "\n".join(
        ",".join(f"{v:.6f}" for v in rng.normal(size=12)) for _ in range(nbytes // 100 + 1)
    )
    return rows.encode()[:nbytes]


def _body(kind: str, size: int, salt: int) -> bytes:
    pool = _csv_pool(2 * MIB) if kind == "csv" else _image_pool(16 * MIB)
    if size >= len(pool):
        return (pool * (size // len(pool) + 1))[:size]
    start = (salt * 7919) % (len(pool) - size)
    return pool[start : start + size]


def plate_objects(
    project: str, batch: str, plate_id: str, plate_id_full: str, shape: PlateShape
) -> Iterator[tuple[str, int, str]]:
    """(key, size, kind) of every object of one synthetic plate."""
    root = f"projects/{project}"
    for i in range(shape.images):
        well = WELLS[i % len(WELLS)]
        site = i // len(WELLS) + 1
        yield (
            f"{root}/{batch}/images/{plate_id_full}/Images/"
            f"r{well}f{site:02d}p01-ch{i % 5 + 1}sk1fk1fl1.tiff",
            shape.image_bytes,
            "image",
        )
    for ch in CHANNELS:
        key = f"{root}/{batch}/illum/{plate_id}/{plate_id}_Illum{ch}.npy"
        yield key, shape.illum_bytes, "image"
    for name in ("Cells.csv", "Cytoplasm.csv", "Nuclei.csv", "Image.csv", "Experiment.csv"):
        yield (
            f"{root}/workspace/analysis/{batch}/{plate_id}/analysis/{name}",
            shape.csv_bytes,
            "csv",
        )
    backend = f"{root}/workspace/backend/{batch}/{plate_id}/{plate_id}"
    yield f"{backend}.sqlite", shape.backend_bytes, "blob"
    yield f"{backend}.csv", shape.csv_bytes, "csv"


def seed_plates(
    client: Any,
    bucket: str,
    project: str,
    batch: str,
    plates: list[tuple[str, str]],
    shape: PlateShape | None = None,
    workers: int = 8,
) -> tuple[int, int]:
    """Create ``bucket`` if needed and upload synthetic plates; returns (objects, bytes)."""
    shape = shape or PlateShape()
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)
    jobs = [
        (key, size, kind, salt)
        for p, (plate_id, plate_id_full) in enumerate(plates)
        for salt, (key, size, kind) in enumerate(
            plate_objects(project, batch, plate_id, plate_id_full, shape), start=p * 1000
        )
    ]

    def put(job: tuple[str, int, str, int]) -> int:
        key, size, kind, salt = job
        client.put_object(Bucket=bucket, Key=key, Body=_body(kind, size, salt))
        return size

    with ThreadPoolExecutor(workers) as pool:
        total = sum(pool.map(put, jobs))
    return len(jobs), total
