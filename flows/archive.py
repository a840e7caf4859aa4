"""Archive finished plates: list → stage → tar → upload → verify → gate → delete → report.

from flows.archive import archive_plates
archive_plates("plates.csv", "2016_04_01_a549", "2016_04_01_Batch1",
               bucket="imaging-live", cold_bucket="imaging-cold", delete_source=True)
"""

from __future__ import annotations

import os
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Annotated, Literal

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from pydantic import Field

from flows.common import (
    DEFAULT_SCRATCH,
    raise_if_failed,
    read_batch_plates,
    rows_of,
    run_logger,
    submit_bounded,
)
from tasks.archive import cost
from tasks.archive import tasks as steps
from tasks.archive.bundle import abort_stale_uploads
from tasks.archive.cost import estimate_archive
from tasks.archive.progress import RunProgress
from tasks.archive.results import PlateResult
from tasks.core.bucket_facts import facts_markdown, read_buckets
from tasks.core.clients import s3_client
from tasks.core.errors import (
    EmptyPlateError,
    InputError,
    PlateFailedError,
    VersioningChoiceError,
    describe,
)
from tasks.core.locks import plate_lock
from tasks.core.memory import limit_malloc_arenas
from tasks.core.retry import PLAIN
from tasks.core.s3 import MIB, StorageClass, check_bucket
from tasks.core.status import ItemStatus
from tasks.formats.compression import check_level
from tasks.formats.layout import resolve_layout
from tasks.formats.listing import merge_sorted_files
from tasks.formats.plates_csv import Plate
from tasks.plates.work import (
    PlateSettings,
    PlateWork,
    VersionedDelete,
    clean_scratch,
    scratch_full,
)

#: Upper bound of ``max_parallel_plates`` (and the size of the flow's thread pool).
MAX_PARALLEL_PLATES = 16


@task(
    name="archive-plate",
    task_run_name="archive-{plate.plate_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
)
def archive_plate(plate: Plate, settings: PlateSettings) -> PlateResult:
    """One plate, start to end. Fails (with its row attached) unless archived or skipped."""
    work = PlateWork.create(settings, plate)
    with plate_lock("archive", work.tag):
        return _archive_plate(work, settings)


def _archive_plate(work: PlateWork, settings: PlateSettings) -> PlateResult:
    log = run_logger()
    plate = work.plate
    result = PlateResult(
        plate.plate_id,
        work.tag,
        ItemStatus.FAILED,
        started=time.time(),
        worker=f"{socket.gethostname()}:{os.getpid()}",
    )
    try:
        recorded, reason = steps.find_archive(work)
        if recorded is not None:
            result.status, result.verified = ItemStatus.SKIPPED, True
            result.tarballs = recorded.tarballs
            result.message = "already archived and verified"
            log.info("%s: already archived and verified, skipping", work.tag)
            if settings.delete_source:
                _delete(work, steps.recorded_entries(work), result)
            return result
        log.info("%s: archiving (%s)", work.tag, reason)

        with ThreadPoolExecutor(1) as pool:
            # incomplete uploads a crashed run left are aborted while the plate is listed
            stale = pool.submit(abort_stale_uploads, work)
            listing = steps.list_plate(work)
            result.aborted_uploads = stale.result()
        result.objects, result.bytes = listing.total_objects, listing.total_bytes
        log.info("%s: %d objects, %.1f MiB", work.tag, result.objects, result.bytes / MIB)
        overlap = steps.preflight(work, listing)
        built_all = steps.build_bundles(work, overlap)
        for bundle, built in zip(work.where.bundles, built_all, strict=True):
            result.tarballs[bundle] = {
                "key": built.key,
                "bytes": built.tarball_bytes,
                "etag": built.etag,
                "md5": built.md5,
            }
            for step, seconds in built.seconds.items():
                result.seconds[step] = result.seconds.get(step, 0.0) + seconds
        steps.verify_listings(work)
        result.status, result.verified = ItemStatus.ARCHIVED, True
        result.message = "archived and verified"
        if result.aborted_uploads:
            result.message += (
                f"; aborted {result.aborted_uploads} incomplete upload(s) an earlier run left"
            )
        if settings.delete_source:
            everything = work.path("entries_all.tsv")
            merge_sorted_files([work.entries(b) for b in work.where.bundles], everything)
            _delete(work, everything, result)
    except EmptyPlateError as exc:
        result.status, result.message = ItemStatus.EMPTY, str(exc)
        log.warning("%s", exc)
    except Exception as exc:
        result.status = ItemStatus.FAILED
        result.message = describe(scratch_full(work, exc) or exc)
        if result.verified:
            result.kept = result.objects - result.deleted
        log.error("%s: %s", work.tag, result.message)
    finally:
        clean_scratch(work)
        result.finished = time.time()
    if not result.ok:
        raise PlateFailedError(result.message, result.as_dict())
    return result


def _delete(work: PlateWork, recorded, result: PlateResult) -> None:
    outcome = steps.delete_verified(work, recorded)
    result.deleted = outcome.deleted
    result.kept = outcome.failed
    if outcome.vanished:
        result.message += f"; {outcome.vanished} objects were already gone"
    if outcome.failed:
        raise PlateFailedError(
            f"{work.tag}: {outcome.failed} verified objects could not be deleted and were kept: "
            + "; ".join(outcome.failures[:5]),
            result.as_dict(),
        )
    result.message += f"; {outcome.deleted} source objects deleted"
    if outcome.markers:
        result.message += (
            f" (delete markers: {outcome.deleted_bytes:,} bytes stay billed as noncurrent "
            "versions until a lifecycle rule expires them)"
        )
        if work.settings.object_lock != "off":
            result.message += (
                f"; the bucket has Object Lock ({work.settings.object_lock}): versions under "
                "retention or legal hold remain until their lock ends"
            )
    elif outcome.versioned:
        result.message += " (the archived versions, by VersionId)"
    if outcome.noncurrent:
        result.message += (
            f"; {outcome.noncurrent} older versions ({outcome.noncurrent_bytes:,} bytes) were "
            "there before and are kept"
        )


@task(name="measure-plates", **PLAIN)
def dry_run_plate(plate: Plate, settings: PlateSettings) -> PlateResult:
    """List and size one plate and state its cost, writing nothing (the estimate before an
    archive, and the whole of a dry run). Its listing step is retried like any listing."""
    work = PlateWork.create(settings, plate)
    result = PlateResult(plate.plate_id, work.tag, ItemStatus.DRY_RUN, started=time.time())
    listing = steps.measure_plate(work)
    result.objects, result.bytes = listing.total_objects, listing.total_bytes
    result.estimate = estimate_archive(
        listing.by_class, settings.storage_class, len(listing.objects), settings.part_size_mib * MIB
    ).as_row()
    if not listing.total_objects:
        result.status = ItemStatus.EMPTY
        result.message = "every prefix is empty"
    else:
        result.message = ", ".join(
            f"{b}: {listing.objects[b]} objects, {listing.bytes[b] / MIB:.1f} MiB"
            for b in listing.objects
        )
    result.finished = time.time()
    return result


@flow(
    name="archive-plates",
    task_runner=ThreadPoolTaskRunner(max_workers=MAX_PARALLEL_PLATES),
    validate_parameters=True,
)
def archive_plates(
    plates_csv: str,
    project_name: str,
    batch_id: str,
    bucket: str,
    cold_bucket: str,
    scratch_dir: str = DEFAULT_SCRATCH,
    storage_class: StorageClass = "DEEP_ARCHIVE",
    delete_source: bool = False,
    versioned_delete: VersionedDelete | None = None,
    dry_run: bool = False,
    max_parallel_plates: Annotated[int, Field(ge=1, le=MAX_PARALLEL_PLATES)] = 2,
    compression: Literal["gzip", "zstd"] = "gzip",
    compression_level: Annotated[int, Field(ge=0, le=22)] | None = None,
    transfer_concurrency: Annotated[int, Field(ge=1, le=64)] = 16,
    part_size_mib: Annotated[int, Field(ge=5, le=5120)] = 8,
    streaming: bool = False,
    keep_scratch: bool = False,
    layout: str = "cellpainting",
    aws_credentials_block: str | None = None,
) -> list[dict]:
    """Archive every plate of a plates.csv into tarballs in a cold bucket, verified, and
    delete the hot copies only when asked and only what was verified.

    Re-running skips plates whose archive is already complete and verified.
    The run fails, after every plate has had its turn and the summary table is
    published, if any plate failed or was empty.

    Args:
        plates_csv: Path or s3:// URL of a CSV with columns plate_id,plate_id_full.
        project_name: Project folder under projects/ in the live bucket.
        batch_id: Batch the plates belong to.
        bucket: Live bucket holding the plates.
        cold_bucket: Bucket that receives tarballs and sidecars.
        scratch_dir: Local folder for staging; needs about 2x a plate's size per plate in flight.
        storage_class: Storage class of the uploaded tarballs.
        delete_source: Delete the verified source objects after the archive is verified.
        versioned_delete: Required with delete_source when the live bucket is versioned
            (Enabled or Suspended): "delete-marker" deletes by key, as ``aws s3 rm`` does,
            which only places delete markers (the archived bytes stay billed as noncurrent
            versions until a lifecycle rule expires them); "purge" deletes exactly the
            archived, verified versions by VersionId. Older versions are never deleted, nor
            is a version under Object Lock.
        dry_run: Only list and size the plates; write nothing anywhere.
        max_parallel_plates: How many plates are archived at the same time.
        compression: gzip (.tar.gz, the established format) or zstd (.tar.zst).
        compression_level: gzip 0-3 (ISA-L levels; 3 is close to gzip -6), zstd 1-22.
        transfer_concurrency: Parallel large downloads/upload parts per plate (small
            objects download eight times as many at once, under the read pace).
        part_size_mib: Smallest multipart part size; doubled while a tarball needs more than
            10,000 parts.
        streaming: Tar straight from S3 reads into a multipart upload: no scratch copy of
            the plate or the tarball, same verification. Default: staged on scratch.
        keep_scratch: Keep a plate's scratch folder (listings, logs) after the run.
        layout: Archive layout name ("cellpainting") or path of a JSON layout file.
        aws_credentials_block: Name of a prefect-aws AwsCredentials block; default: boto3's
            standard configuration chain.

    Returns:
        One dict per plate: status (archived, skipped, empty, failed, dry-run), counts,
        tarballs with their ETags, verified, deleted, kept, message, timings.
    """
    log = run_logger()
    plates = read_batch_plates(plates_csv, project_name, batch_id, aws_credentials_block)
    try:
        check_level(compression, compression_level)
    except ValueError as exc:
        raise InputError(str(exc)) from exc
    settings = PlateSettings(
        project_name=project_name,
        batch_id=batch_id,
        bucket=bucket,
        cold_bucket=cold_bucket,
        scratch_dir=scratch_dir,
        storage_class=storage_class,
        delete_source=delete_source,
        keep_scratch=keep_scratch,
        compression=compression,
        compression_level=compression_level,
        transfer_concurrency=transfer_concurrency,
        part_size_mib=part_size_mib,
        streaming=streaming,
        credentials_block=aws_credentials_block,
        layout=resolve_layout(layout),
    )
    # Every plate's keys resolve (ids checked) before the first S3 request.
    for plate in plates:
        PlateWork.create(settings, plate)
    limit_malloc_arenas()  # flat memory however long the plate takes
    client = s3_client(aws_credentials_block)
    check_bucket(client, bucket)
    check_bucket(client, cold_bucket)
    found = read_buckets(client, [bucket, cold_bucket])  # in the estimate artifact below
    versioning = None if found[0].versioning == "off" else found[0].versioning
    if delete_source and versioning is not None and versioned_delete is None:
        raise VersioningChoiceError(
            f"bucket {bucket!r} is versioned ({versioning}): deleting the sources needs "
            "versioned_delete (--versioned-delete) 'delete-marker' (delete markers only; the "
            "data stays billed as noncurrent versions) or 'purge' (the archived versions "
            "deleted by VersionId)"
        )
    if versioned_delete is not None and versioning is None:
        log.info(
            "s3://%s is not versioned: versioned_delete=%r changes nothing, sources are deleted "
            "by key",
            bucket,
            versioned_delete,
        )
    settings = replace(
        settings,
        bucket_versioning=versioning,
        versioned_delete=versioned_delete,
        object_lock=found[0].object_lock,
    )
    log.info(
        "%d plates of %s/%s: s3://%s -> s3://%s (%s)%s",
        len(plates),
        project_name,
        batch_id,
        bucket,
        cold_bucket,
        storage_class,
        " [dry run]" if dry_run else "",
    )

    def failed_row(plate: Plate, reason: str) -> dict:
        tag = PlateWork.create(settings, plate).tag
        return PlateResult(plate.plate_id, tag, ItemStatus.FAILED, message=reason).as_dict()

    # the cost before anything is written (and the whole result of a dry run)
    measured = rows_of(
        submit_bounded(dry_run_plate, plates, max_parallel_plates, settings=settings),
        plates,
        failed_row,
    )
    estimated = [{"plate": r["plate_id"], "bytes": r["bytes"], **r["estimate"]} for r in measured]
    create_markdown_artifact(
        key="archive-estimate",
        markdown=cost.as_markdown(estimated, storage_class)
        + (cost.versioned_note(versioned_delete, versioning, estimated) if delete_source else "")
        + "\n\n### The buckets\n\n"
        + facts_markdown(found),
        description="What archiving these plates costs and saves, before anything is written",
    )
    if dry_run:
        results = measured
    else:
        sizes = {r["plate_id"]: (r["tag"], r["bytes"]) for r in measured}
        # a plate that could not even be listed keeps that row; it is not tried again
        unlisted = {r["plate_id"]: r for r in measured if r["status"] == ItemStatus.FAILED}
        plates_to_archive = [p for p in plates if p.plate_id not in unlisted]
        tracker = RunProgress.start(
            f"{os.getpid()}-{time.monotonic_ns()}",
            sum(b for _, b in sizes.values()),
            f"Bytes archived of {len(plates)} plates ({project_name}/{batch_id})",
        )
        settings = replace(settings, progress_key=tracker.key)
        try:
            futures = submit_bounded(
                archive_plate,
                plates_to_archive,
                max_parallel_plates,
                on_done=lambda plate, _: tracker.finish_plate(*sizes[plate.plate_id]),
                settings=settings,
            )
        finally:
            tracker.close()
        archived = dict(
            zip(
                (p.plate_id for p in plates_to_archive),
                rows_of(futures, plates_to_archive, failed_row),
                strict=True,
            )
        )
        results = [unlisted.get(p.plate_id) or archived[p.plate_id] for p in plates]
    _publish(results, dry_run)
    raise_if_failed(results, {"archived", "skipped", "dry-run"}, "archived")
    return results


def _publish(results: list[dict], dry_run: bool) -> None:
    rows = [PlateResult(**r).as_row() for r in results]
    create_table_artifact(
        key="archive-plates-dry-run" if dry_run else "archive-plates",
        table=rows,
        description="Per-plate archive summary",
    )
    total = sum(r["bytes"] for r in results)
    by_status: dict[str, int] = {}
    for r in results:
        by_status[r["status"]] = by_status.get(r["status"], 0) + 1
    create_markdown_artifact(
        key="archive-plates-totals",
        markdown=f"**{len(results)} plates**, {total / MIB:,.1f} MiB: "
        + ", ".join(f"{n} {s}" for s, n in sorted(by_status.items())),
    )
