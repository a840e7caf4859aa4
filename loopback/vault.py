"""Glacier vault jobs for the loopback endpoint, as the real service runs them.

moto keeps vaults and archives but its jobs finish on a fixed clock, ignore ``Range``,
return no ``checksum``, report a plain SHA-256 where the tree hash belongs and never run
out of Expedited capacity. This layer serves every ``/jobs`` call itself, reading archives
from moto's store in this process:

- jobs finish after ``durations[tier]`` seconds, and their output can be downloaded for
  ``output_window`` seconds after that (then ``ResourceNotFoundException``, as after 24 h);
- ``describe_job`` reports ``ArchiveSHA256TreeHash``, ``SHA256TreeHash`` and the size;
- ``get_job_output`` honours ``Range`` and returns the range's tree hash
  (``x-amz-sha256-tree-hash``) when the range is tree-hash aligned, with ``Content-Range``;
- ``capacity_errors`` Expedited starts answer ``InsufficientCapacityException`` (503);
- :meth:`VaultJobs.corrupt` flips a byte of what an archive's output serves (its checksums
  stay those of the true bytes), to prove a copy is checked;
- uploads report the archive's real tree hash.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from loopback.treehash import aligned, leaves, tree_hash

ACCOUNT = "123456789012"
REGION = "us-east-1"
_JOBS = re.compile(
    r"^/(?P<account>[^/]+)/vaults/(?P<vault>[^/]+)/jobs(?:/(?P<job>[^/]+))?(?P<output>/output)?$"
)
_ARCHIVES = re.compile(r"^/(?P<account>[^/]+)/vaults/(?P<vault>[^/]+)/archives$")
_ARCHIVE = re.compile(r"^/(?P<account>[^/]+)/vaults/(?P<vault>[^/]+)/archives/(?P<archive>[^/]+)$")
_RANGE = re.compile(r"bytes=(\d+)-(\d*)")


@dataclass
class _Job:
    job_id: str
    vault: str
    action: str  # ArchiveRetrieval | InventoryRetrieval
    tier: str
    created: float
    archive_id: str | None = None
    description: str | None = None


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _json(start_response: Callable, status: str, body: Any, headers: Iterable = ()) -> list[bytes]:
    data = json.dumps(body).encode() if body is not None else b""
    start_response(
        status,
        [("Content-Type", "application/json"), ("Content-Length", str(len(data))), *headers],
    )
    return [data]


def _error(start_response: Callable, status: str, code: str, message: str) -> list[bytes]:
    return _json(
        start_response,
        status,
        {"code": code, "message": message, "type": "Client"},
        [("x-amzn-ErrorType", code)],
    )


class VaultJobs:
    """Retrieval jobs over moto's vaults: timing, ranges, checksums, capacity, expiry."""

    def __init__(self) -> None:
        self.durations: dict[str, float] = {"Expedited": 0.0, "Standard": 0.0, "Bulk": 0.0}
        self.output_window = 24 * 3600.0
        self.capacity_errors = 0  # Expedited starts still to refuse
        #: Every InitiateJob seen: (vault, archive id or None, tier), in order.
        self.started: list[tuple[str, str | None, str]] = []
        self._jobs: dict[str, _Job] = {}
        self._hashes: dict[tuple[str, str], str] = {}
        self._leaf_cache: dict[tuple[str, str], list[bytes]] = {}
        self._corrupt: dict[str, int] = {}
        #: Archives deleted, per vault: deleting one again succeeds, as on Glacier.
        self._deleted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def reset(self) -> None:
        with self._lock:
            self.durations = {"Expedited": 0.0, "Standard": 0.0, "Bulk": 0.0}
            self.output_window = 24 * 3600.0
            self.capacity_errors = 0
            self.started.clear()
            self._jobs.clear()
            self._hashes.clear()
            self._leaf_cache.clear()
            self._corrupt.clear()
            self._deleted.clear()

    def corrupt(self, archive_id: str, offset: int) -> None:
        """Serve the archive's output with the byte at ``offset`` flipped."""
        with self._lock:
            self._corrupt[archive_id] = offset

    def expire(self, job_id: str | None = None) -> None:
        """Make one job's output (or every job's) no longer downloadable."""
        with self._lock:
            for job in self._jobs.values():
                if job_id is None or job.job_id == job_id:
                    job.created -= self.output_window + max(self.durations.values()) + 1

    # -- moto's store --------------------------------------------------------------------

    @staticmethod
    def _vault(name: str) -> Any:
        from moto.glacier.models import glacier_backends

        return glacier_backends[ACCOUNT][REGION].vaults.get(name)

    def _tree_hash(self, vault: str, archive_id: str, body: bytes) -> str:
        with self._lock:
            found = self._hashes.get((vault, archive_id))
        if found is None:
            found = tree_hash(body)
            with self._lock:
                self._hashes[(vault, archive_id)] = found
        return found

    def _leaves(self, vault: str, archive_id: str, body: bytes) -> list[bytes]:
        with self._lock:
            found = self._leaf_cache.get((vault, archive_id))
        if found is None:
            found = leaves(body)
            with self._lock:
                self._leaf_cache[(vault, archive_id)] = found
        return found

    # -- the WSGI side -------------------------------------------------------------------

    def handle(
        self, environ: dict, start_response: Callable, app: Callable
    ) -> Iterable[bytes] | None:
        """Answer a Glacier request, or None to let moto serve it as it is."""
        path = environ.get("PATH_INFO", "")
        method = environ["REQUEST_METHOD"]
        if method == "POST" and _ARCHIVES.match(path):
            return self._upload(environ, start_response, app)
        archive = _ARCHIVE.match(path)
        if method == "DELETE" and archive:
            return self._delete_archive(archive["vault"], archive["archive"], start_response)
        match = _JOBS.match(path)
        if match is None:
            return None
        vault_name = match["vault"]
        vault = self._vault(vault_name)
        if vault is None:
            return _error(
                start_response,
                "404 Not Found",
                "ResourceNotFoundException",
                f"Vault not found for ARN: {vault_name}",
            )
        if method == "POST" and not match["job"]:
            return self._initiate(environ, start_response, vault_name, vault)
        if method == "GET" and not match["job"]:
            return self._list(environ, start_response, vault_name, vault)
        with self._lock:
            job = self._jobs.get(match["job"] or "")
        if job is None or job.vault != vault_name:
            return _error(
                start_response,
                "404 Not Found",
                "ResourceNotFoundException",
                f"The job ID was not found: {match['job']}",
            )
        if match["output"]:
            return self._output(environ, start_response, job, vault)
        return _json(start_response, "200 OK", self._describe(job, vault))

    def _delete_archive(
        self, vault_name: str, archive_id: str, start_response: Callable
    ) -> Iterable[bytes]:
        """DeleteArchive is idempotent on Glacier ("Attempting to delete an already-deleted
        archive does not result in an error"); moto answers 500 the second time."""
        from urllib.parse import unquote

        archive_id = unquote(archive_id)
        vault = self._vault(vault_name)
        with self._lock:
            if vault is not None and archive_id in vault.archives:
                del vault.archives[archive_id]
                self._deleted.add((vault_name, archive_id))
            elif (vault_name, archive_id) not in self._deleted:
                return _error(
                    start_response,
                    "404 Not Found",
                    "ResourceNotFoundException",
                    f"Archive not found in vault {vault_name}: {archive_id}",
                )
        start_response("204 No Content", [("Content-Length", "0")])
        return [b""]

    def _upload(self, environ: dict, start_response: Callable, app: Callable) -> Iterable[bytes]:
        import io

        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        real = tree_hash(body)

        def rewrite(status: str, headers: list, exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "x-amz-sha256-tree-hash"]
            return start_response(status, [*kept, ("x-amz-sha256-tree-hash", real)], exc_info)

        return app(environ, rewrite)

    def _initiate(
        self, environ: dict, start_response: Callable, vault_name: str, vault: Any
    ) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        spec = json.loads(environ["wsgi.input"].read(length) or b"{}")
        kind, tier = spec.get("Type", ""), spec.get("Tier") or "Standard"
        archive_id = spec.get("ArchiveId")
        with self._lock:
            self.started.append((vault_name, archive_id, tier))
            refuse = tier == "Expedited" and self.capacity_errors > 0
            if refuse:
                self.capacity_errors -= 1
        if refuse:
            return _error(
                start_response,
                "503 Service Unavailable",
                "InsufficientCapacityException",
                "There is not enough capacity to process this job request.",
            )
        if kind == "archive-retrieval":
            if archive_id not in vault.archives:
                return _error(
                    start_response,
                    "404 Not Found",
                    "ResourceNotFoundException",
                    f"Archive not found: {archive_id}",
                )
            action = "ArchiveRetrieval"
        elif kind == "inventory-retrieval":
            action = "InventoryRetrieval"
        else:
            return _error(
                start_response,
                "400 Bad Request",
                "InvalidParameterValueException",
                f"Invalid job type: {kind}",
            )
        job = _Job(
            uuid.uuid4().hex + uuid.uuid4().hex,
            vault_name,
            action,
            tier,
            time.time(),
            archive_id,
            spec.get("Description"),
        )
        with self._lock:
            self._jobs[job.job_id] = job
        location = f"/{ACCOUNT}/vaults/{vault_name}/jobs/{job.job_id}"
        return _json(
            start_response,
            "202 Accepted",
            None,
            [("x-amz-job-id", job.job_id), ("Location", location)],
        )

    def _done_at(self, job: _Job) -> float:
        return job.created + self.durations.get(job.tier, 0.0)

    def _describe(self, job: _Job, vault: Any) -> dict:
        done = time.time() >= self._done_at(job)
        body: dict[str, Any] = {
            "JobId": job.job_id,
            "Action": job.action,
            "Tier": job.tier,
            "VaultARN": vault.arn,
            "CreationDate": _iso(job.created),
            "Completed": done,
            "StatusCode": "Succeeded" if done else "InProgress",
            "JobDescription": job.description,
        }
        if done:
            body["CompletionDate"] = _iso(self._done_at(job))
        if job.action == "ArchiveRetrieval":
            archive = vault.archives.get(job.archive_id)
            body["ArchiveId"] = job.archive_id
            if archive is not None:
                digest = self._tree_hash(job.vault, job.archive_id, archive["body"])
                body["ArchiveSizeInBytes"] = archive["size"]
                body["ArchiveSHA256TreeHash"] = digest
                body["SHA256TreeHash"] = digest
                body["RetrievalByteRange"] = f"0-{archive['size'] - 1}"
        return body

    def _list(
        self, environ: dict, start_response: Callable, vault_name: str, vault: Any
    ) -> list[bytes]:
        from urllib.parse import parse_qs

        query = {k: v[0] for k, v in parse_qs(environ.get("QUERY_STRING", "")).items()}
        with self._lock:
            jobs = [j for j in self._jobs.values() if j.vault == vault_name]
        listed = [self._describe(j, vault) for j in sorted(jobs, key=lambda j: j.created)]
        if "statuscode" in query:
            listed = [j for j in listed if j["StatusCode"] == query["statuscode"]]
        if "completed" in query:
            listed = [j for j in listed if str(j["Completed"]).lower() == query["completed"]]
        start = int(query.get("marker") or 0)
        limit = int(query.get("limit") or 50)
        page = listed[start : start + limit]
        marker = str(start + limit) if start + limit < len(listed) else None
        return _json(start_response, "200 OK", {"JobList": page, "Marker": marker})

    def _output(
        self, environ: dict, start_response: Callable, job: _Job, vault: Any
    ) -> list[bytes]:
        now = time.time()
        if now < self._done_at(job):
            return _error(
                start_response,
                "400 Bad Request",
                "InvalidParameterValueException",
                f"The job is not currently available for download: {job.job_id}",
            )
        if now > self._done_at(job) + self.output_window:
            return _error(
                start_response,
                "404 Not Found",
                "ResourceNotFoundException",
                f"The job ID was not found: {job.job_id}",
            )
        if job.action == "InventoryRetrieval":
            inventory = {
                "VaultARN": vault.arn,
                "InventoryDate": _iso(self._done_at(job)),
                "ArchiveList": [
                    {
                        "ArchiveId": archive_id,
                        "ArchiveDescription": a["description"],
                        "CreationDate": a["creation_date"],
                        "Size": a["size"],
                        "SHA256TreeHash": self._tree_hash(job.vault, archive_id, a["body"]),
                    }
                    for archive_id, a in list(vault.archives.items())
                ],
            }
            return _json(start_response, "200 OK", inventory)
        archive = vault.archives.get(job.archive_id)
        if archive is None:
            return _error(
                start_response,
                "404 Not Found",
                "ResourceNotFoundException",
                f"Archive not found: {job.archive_id}",
            )
        body: bytes = archive["body"]
        size = len(body)
        start, end, status = 0, size - 1, "200 OK"
        wanted = _RANGE.match(environ.get("HTTP_RANGE", ""))
        if wanted:
            start = int(wanted[1])
            end = min(int(wanted[2]) if wanted[2] else size - 1, size - 1)
            status = "206 Partial Content"
        data = body[start : end + 1]
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Content-Length", str(len(data))),
            ("Content-Range", f"bytes {start}-{end}/{size}"),
            ("Accept-Ranges", "bytes"),
        ]
        if aligned(start, end, size):
            whole = not wanted or (start == 0 and end == size - 1)
            checksum = (
                self._tree_hash(job.vault, job.archive_id, body) if whole else tree_hash(data)
            )
            headers.append(("x-amz-sha256-tree-hash", checksum))
        with self._lock:
            flip = self._corrupt.get(job.archive_id or "")
        if flip is not None and start <= flip <= end:
            mutable = bytearray(data)
            mutable[flip - start] ^= 0xFF
            data = bytes(mutable)
        start_response(status, headers)
        return [data]
