"""The archive run's rows: one per plate, as the summary table and the return value show it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from tasks.core.s3 import MIB


@dataclass
class PlateResult:
    """One row of the run summary."""

    plate_id: str
    tag: str
    status: str  # archived | skipped | empty | failed | dry-run
    objects: int = 0
    bytes: int = 0
    tarballs: dict[str, dict] = field(default_factory=dict)
    verified: bool = False
    deleted: int = 0
    kept: int = 0
    message: str = ""
    started: float = 0.0
    finished: float = 0.0
    seconds: dict[str, float] = field(default_factory=dict)
    worker: str = ""  # host:pid that archived the plate
    aborted_uploads: int = 0  # incomplete multipart uploads of earlier runs, aborted
    estimate: dict[str, float] = field(default_factory=dict)  # dry runs: the cost figures

    @property
    def ok(self) -> bool:
        return self.status in {"archived", "skipped", "dry-run"}

    def as_dict(self) -> dict:
        return asdict(self)

    def as_row(self) -> dict:
        """A flat row for the Prefect table artifact."""
        wall = self.finished - self.started
        tar_bytes = sum(t["bytes"] for t in self.tarballs.values())
        return {
            "plate": self.plate_id,
            "status": self.status,
            "objects": self.objects,
            "MiB": round(self.bytes / MIB, 1),
            "tarball MiB": round(tar_bytes / MIB, 1),
            "ETags": " ".join(f"{b}={t['etag']}" for b, t in self.tarballs.items()),
            "verified": self.verified,
            "deleted": self.deleted,
            "kept": self.kept,
            "seconds": round(wall, 1),
            "MiB/s": round(self.bytes / MIB / wall, 1) if wall > 0 and self.bytes else 0,
            **self.estimate,
            "message": self.message,
        }
