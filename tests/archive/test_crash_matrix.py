"""The archive flow killed (SIGKILL, a real child process) at each stage of a plate, then run
again: it finishes the plate, never deletes anything unverified, never takes a half-written
archive for a verified one, and leaves no incomplete upload behind.

The kill comes from the endpoint: when the request that marks a stage arrives, the child is
killed before it is served (or, for the step after an upload, once the upload completed).
After the kill and after the re-run, every source object either still exists unchanged or is
byte-identical inside an archive whose ETag sidecar matches the stored tarball.
"""

from __future__ import annotations

import io
import tarfile

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, kill_child_at

from flows.archive import archive_plates
from loopback.seed import PlateShape

pytestmark = pytest.mark.xdist_group("crash-matrix")
TAG = f"{PROJECT}_{BATCH}_{SPACED[0]}"
PLATES = f"imaging_analysis/{PROJECT}/plates/"
#: Big enough for multipart tarballs at 5 MiB parts.
SHAPE = PlateShape(
    images=20,
    image_bytes=768 * 1024,
    illum_bytes=64 * 1024,
    csv_bytes=16 * 1024,
    backend_bytes=6 * 1024 * 1024,
)

SCRIPT = """
import sys
from flows.archive import archive_plates
csv, scratch, mode, project, batch, live, cold = sys.argv[1:]
archive_plates(csv, project, batch, live, cold, scratch_dir=scratch, delete_source=True,
               part_size_mib=5, streaming=mode == "streaming", max_parallel_plates=1,
               storage_class="STANDARD")
"""


def stage_matcher(stage: str):
    """A predicate over requests that is true at the request marking ``stage``.

    The run is killed when that request arrives; it is not served (the run died before
    sending it) except mid-delete, where S3 deletes and the run dies before it hears so, and
    before verify, whose marker is verify's first look at the completed upload."""
    seen = {"completed": 0}

    def at(request) -> bool:
        tarball = request.key.endswith(".tar.gz")
        if request.operation == "MultipartPost" and "uploadId" in request.query and tarball:
            seen["completed"] += 1
        if stage == "staging":
            return request.operation == "GetObject" and "/images/" in request.key
        if stage in ("mid-upload", "writing-tarball"):
            return request.operation == "MultipartPut" and tarball
        if stage == "before-verify":  # the upload is complete; the next look at it is verify's
            return seen["completed"] > 0 and request.operation == "HeadObject" and tarball
        if stage == "before-delete":
            return request.operation == "DeleteObjects"
        if stage == "mid-delete":  # the delete reaches S3; the run dies before the answer
            return request.operation == "DeleteObjects"
        return False

    return at


def archived_members(s3) -> dict[str, bytes]:
    """Original key → bytes, from every tarball whose ETag sidecar matches it (verified)."""
    found: dict[str, bytes] = {}
    listed = s3.list_objects_v2(Bucket=COLD, Prefix=PLATES).get("Contents", [])
    for o in listed:
        if not o["Key"].endswith(".tar.gz"):
            continue
        sidecar = o["Key"][: -len(".tar.gz")] + ".etag"
        try:
            recorded = s3.get_object(Bucket=COLD, Key=sidecar)["Body"].read().decode().strip()
        except s3.exceptions.NoSuchKey:
            continue
        if recorded != o["ETag"].strip('"'):
            continue
        body = s3.get_object(Bucket=COLD, Key=o["Key"])["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as tar:
            for member in tar:
                if member.isfile():
                    key = "projects/" + member.name.split("/", 1)[1]
                    found[key] = tar.extractfile(member).read()
    return found


def nothing_lost(s3, originals: dict[str, bytes]) -> dict[str, int]:
    """Every source is live and unchanged, or byte-identical in a verified archive."""
    archived = archived_members(s3)
    live = lost = in_archive = 0
    for key, body in originals.items():
        try:
            now = s3.get_object(Bucket=LIVE, Key=key)["Body"].read()
        except s3.exceptions.NoSuchKey:
            now = None
        if now == body:
            live += 1
        elif archived.get(key) == body:
            in_archive += 1
        else:
            lost += 1
    assert lost == 0, f"{lost} source objects lost"
    return {"live": live, "archived": in_archive}


def free_plate_lock() -> None:
    """What an operator does after making sure the killed run is gone (otherwise its hold on
    the plate lapses when its lease does, 60-300 s after its last renewal): free the slot."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitUpdate

    from tasks.core.locks import lock_name

    with get_client(sync_client=True) as client:
        name = lock_name("archive", TAG)
        held = client.read_global_concurrency_limit_by_name(name)
        assert held.active_slots == 1  # the killed run held the plate
        client.update_global_concurrency_limit(name, GlobalConcurrencyLimitUpdate(active_slots=0))


@pytest.mark.parametrize(
    ("stage", "mode"),
    [
        ("staging", "staged"),
        ("writing-tarball", "streaming"),
        ("mid-upload", "staged"),
        ("before-verify", "staged"),
        ("before-delete", "staged"),
        ("mid-delete", "staged"),
    ],
)
def test_killed_at_each_stage_then_rerun_loses_nothing(
    loopback, s3, seed, plates_csv, tmp_path, stage, mode
):
    originals = seed(SPACED, shape=SHAPE)
    csv = plates_csv(SPACED)
    scratch = tmp_path / "scratch"
    kill_child_at(
        loopback,
        SCRIPT,
        [csv, str(scratch), mode, PROJECT, BATCH, LIVE, COLD],
        stage_matcher(stage),
        # mid-delete: S3 deletes and the run dies before hearing so; before verify: the
        # marker is verify's first look at the completed upload
        served=stage in ("mid-delete", "before-verify"),
        env={"COLDFLOW_LOCK_LEASE_SECONDS": "60"},  # Prefect's shortest lease
    )

    free_plate_lock()
    after_kill = nothing_lost(s3, originals)
    if stage in ("staging", "writing-tarball", "mid-upload", "before-verify", "before-delete"):
        assert after_kill["live"] == len(originals)  # nothing deleted before verification

    (row,) = archive_plates(
        csv,
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(scratch),
        delete_source=True,
        part_size_mib=5,
        streaming=mode == "streaming",
        storage_class="STANDARD",
    )
    assert row["status"] in ("archived", "skipped"), row
    after_rerun = nothing_lost(s3, originals)
    assert after_rerun == {"live": 0, "archived": len(originals)}  # the plate is finished
    assert s3.list_multipart_uploads(Bucket=COLD).get("Uploads", []) == []
