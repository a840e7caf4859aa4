"""Nothing is deleted that is not verified; bad input fails before any write; re-runs are safe."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from conftest import (
    BATCH,
    COLD,
    LIVE,
    PROJECT,
    SMALL,
    SPACED,
    fill_disk,
    live_keys,
    small_scratch,
    source_keys,
)
from prefect.exceptions import ParameterTypeError

from flows.archive import archive_plates
from tasks.core.errors import BucketNotFoundError, InputError, PlatesFailedError, PlatesFileError

PLATE_B = ("BR00099999", "BR00099999__2018-01-01T00_00_00-Measurement 2")
WRITES = {
    "PutObject",
    "MultipartPost",
    "MultipartPut",
    "DeleteObjects",
    "DeleteObject",
    "RestoreObject",
}

TAG = f"{PROJECT}_{BATCH}_{SPACED[0]}"


def run(csv: str, tmp_path, **kwargs):
    return archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "scratch"), **kwargs
    )


def writes(loopback) -> dict[str, int]:
    return {op: n for op, n in loopback.request_counts.items() if op in WRITES}


def cold_keys(s3) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=COLD).get("Contents", [])}


# --- verification gates deletion -------------------------------------------------------------


def test_delete_source_deletes_exactly_the_verified_objects(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED, PLATE_B)
    bystander = f"projects/{PROJECT}/{BATCH}/images/{SPACED[1]}-other/keep.tiff"
    s3.put_object(Bucket=LIVE, Key=bystander, Body=b"not this plate")
    result = run(plates_csv(SPACED, PLATE_B), tmp_path, delete_source=True)
    assert [r["status"] for r in result] == ["archived", "archived"]
    assert sum(r["deleted"] for r in result) == len(originals)
    assert source_keys(s3) == {bystander: s3.head_object(Bucket=LIVE, Key=bystander)["ETag"]}


def test_etag_mismatch_keeps_every_source(s3, seed, plates_csv, tmp_path, loopback):
    originals = seed(SPACED)
    before = source_keys(s3)
    loopback.override_header("HEAD", r"_backend\.tar\.gz$", "ETag", '"0123456789abcdef"')
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True)
    row = failed.value.summary[0]
    assert row["status"] == "failed" and row["deleted"] == 0
    assert "remote ETag 0123456789abcdef differs from the local" in row["message"]
    assert source_keys(s3) == before and set(originals) <= set(before)
    assert not any(k.endswith("_backend.etag") for k in cold_keys(s3))


def test_source_changed_and_added_after_listing_keeps_every_source(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED)
    changed = next(k for k in originals if k.endswith(".tiff"))
    added = f"projects/{PROJECT}/{BATCH}/illum/{SPACED[0]}/late arrival.npy"

    def meddle() -> None:  # while the last tarball uploads: after staging, before the gate
        s3.put_object(Bucket=LIVE, Key=changed, Body=b"rewritten")
        s3.put_object(Bucket=LIVE, Key=added, Body=b"new")

    loopback.on_request("PutObject", r"_backend\.tar\.gz$", meddle)
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True)
    row = failed.value.summary[0]
    assert row["status"] == "failed" and row["verified"] and row["deleted"] == 0
    assert row["kept"] == len(originals)
    assert repr(changed) in row["message"] and repr(added) in row["message"]
    assert "1 changed" in row["message"] and "1 appeared" in row["message"]
    assert set(originals) | {added} == set(source_keys(s3))


def test_a_source_rewritten_after_the_gate_is_kept_by_s3s_conditional_delete(
    s3, seed, plates_csv, tmp_path, loopback
):
    """The last check can't see a write that lands between it and the delete: each key in
    DeleteObjects carries the ETag that was archived, and S3 refuses (412) the changed one."""
    originals = seed(SPACED)
    changed = sorted(k for k in originals if k.endswith(".tiff"))[0]
    loopback.on_request(
        "DeleteObjects", "", lambda: s3.put_object(Bucket=LIVE, Key=changed, Body=b"rewritten")
    )
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True)
    row = failed.value.summary[0]
    assert row["verified"] and row["deleted"] == len(originals) - 1, row["message"]
    assert changed in row["message"] and "PreconditionFailed" in row["message"]
    assert set(source_keys(s3)) == {changed}
    assert s3.get_object(Bucket=LIVE, Key=changed)["Body"].read() == b"rewritten"


def test_source_changed_while_staging_fails_the_plate(s3, seed, plates_csv, tmp_path, loopback):
    originals = seed(SPACED)
    victim = sorted(k for k in originals if "/images/" in k)[-1]
    loopback.on_request(  # as its download arrives: whatever else is downloading meanwhile
        "GetObject",
        re.escape(victim) + "$",
        lambda: s3.put_object(Bucket=LIVE, Key=victim, Body=b"changed"),
    )
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True, transfer_concurrency=1)
    message = failed.value.summary[0]["message"]
    assert f"s3://{LIVE}/{victim} changed after it was listed" in message
    assert set(originals) == set(source_keys(s3))
    assert not any(k.endswith(".etag") for k in cold_keys(s3))


# --- bad input ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plate_id\nA\n", "missing column(s) plate_id_full"),
        ("", "the file is empty"),
        ("plate_id,plate_id_full\n", "no plates listed"),
        ("plate_id,plate_id_full\nA,A_full\nA,A_other\n", "plate_id 'A' is listed more than once"),
        ("plate_id,plate_id_full\nA/B,A_full\n", "contains a slash"),
        ("plate_id,plate_id_full\nA,..\n", "contains '..'"),
        ("plate_id,plate_id_full\nA,A\x07full\n", "contains a control character"),
        ("plate_id,plate_id_full\nA,\n", "plate_id_full is empty"),
    ],
)
def test_bad_plates_csv_fails_before_any_write(
    s3, seed, plates_csv, tmp_path, loopback, text, expected
):
    seed(SPACED)
    before = source_keys(s3)
    loopback.clear_faults()  # forget the seeding's requests
    with pytest.raises(PlatesFileError, match=r"plates\.csv") as failed:
        run(plates_csv(text=text), tmp_path, delete_source=True)
    assert expected in str(failed.value)
    assert loopback.request_counts == {}
    assert source_keys(s3) == before


def test_missing_plates_csv(tmp_path, loopback):
    with pytest.raises(PlatesFileError, match="no such file"):
        run(str(tmp_path / "nope.csv"), tmp_path)


def test_unknown_bucket_fails_before_any_write(s3, seed, plates_csv, tmp_path, loopback):
    seed(SPACED)
    loopback.clear_faults()
    with pytest.raises(BucketNotFoundError, match="bucket 'no-such-cold' does not exist"):
        archive_plates(
            plates_csv(SPACED),
            PROJECT,
            BATCH,
            LIVE,
            "no-such-cold",
            scratch_dir=str(tmp_path),
            delete_source=True,
        )
    assert writes(loopback) == {}


def test_bad_storage_class_fails_before_any_s3_call(s3, plates_csv, tmp_path, loopback):
    loopback.clear_faults()
    with pytest.raises(ParameterTypeError, match="storage_class"):
        run(plates_csv(SPACED), tmp_path, storage_class="FROZEN_SOLID")
    assert loopback.request_counts == {}


@pytest.mark.parametrize("field", ["project_name", "batch_id"])
def test_bad_project_or_batch_fails_before_any_s3_call(s3, plates_csv, tmp_path, loopback, field):
    loopback.clear_faults()
    names = {"project_name": PROJECT, "batch_id": BATCH, field: "../escape"}
    with pytest.raises(InputError, match=f"{field} '../escape'"):
        archive_plates(
            plates_csv(SPACED), bucket=LIVE, cold_bucket=COLD, scratch_dir=str(tmp_path), **names
        )
    assert loopback.request_counts == {}


def test_empty_plate_is_reported_and_others_go_on(s3, seed, plates_csv, tmp_path):
    seed(SPACED)
    with pytest.raises(PlatesFailedError, match="1 of 2 plates not archived") as failed:
        run(plates_csv(SPACED, ("EMPTY1", "EMPTY1_full")), tmp_path)
    rows = {r["plate_id"]: r for r in failed.value.summary}
    assert rows[SPACED[0]]["status"] == "archived"
    assert rows["EMPTY1"]["status"] == "empty"
    assert "every prefix is empty" in rows["EMPTY1"]["message"]
    assert not any("EMPTY1" in k for k in cold_keys(s3))
    assert not any("EMPTY1" in k for k in live_keys(s3))


def test_scratch_too_small_fails_before_staging(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    with (
        small_scratch(tmp_path / "tiny", "1m") as small,
        pytest.raises(PlatesFailedError) as failed,
    ):
        archive_plates(
            plates_csv(SPACED),
            PROJECT,
            BATCH,
            LIVE,
            COLD,
            scratch_dir=str(small),
            delete_source=True,
        )
    message = failed.value.summary[0]["message"]
    assert "MiB free" in message and "needs" in message and "scratch" in message
    assert cold_keys(s3) == set()
    assert set(originals) == set(source_keys(s3))


def test_scratch_filling_up_mid_plate_fails_it_and_a_rerun_finishes(
    s3, seed, plates_csv, tmp_path, loopback
):
    """Another process fills the scratch disk while the plate is staging: the plate fails
    saying scratch is full, nothing is deleted or left half-uploaded, its scratch folder is
    removed; once there is room again, a re-run archives and deletes it."""
    originals = seed(SPACED)
    before = source_keys(s3)
    csv = plates_csv(SPACED)
    with small_scratch(tmp_path / "small", "300m") as small:  # the plate reserves ~260 MiB
        filler = small / "someone-else.bin"

        # all but 64 KiB, while the plate's images download
        loopback.on_request("GetObject", r"\.tiff$", lambda: fill_disk(filler))
        with pytest.raises(PlatesFailedError) as failed:
            archive_plates(
                csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(small), delete_source=True
            )
        row = failed.value.summary[0]
        assert row["status"] == "failed" and row["deleted"] == 0
        assert f"scratch {small} filled up while the plate was on it" in row["message"]
        assert "No space left" in row["message"] and "larger scratch_dir" in row["message"]
        assert source_keys(s3) == before
        assert not any(k.endswith(".etag") for k in cold_keys(s3))
        assert not s3.list_multipart_uploads(Bucket=COLD).get("Uploads")
        assert sorted(p.name for p in small.iterdir()) == [filler.name]

        filler.unlink()
        loopback.clear_faults()
        (row,) = archive_plates(
            csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(small), delete_source=True
        )
    assert row["status"] == "archived" and row["deleted"] == len(originals)


def test_key_the_layout_cannot_hold_fails_the_plate(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    bad = f"projects/{PROJECT}/workspace/backend/{BATCH}/{SPACED[0]}/tab\there.csv"
    s3.put_object(Bucket=LIVE, Key=bad, Body=b"x")
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True)
    assert "contains a control character" in failed.value.summary[0]["message"]
    assert set(originals) | {bad} == set(source_keys(s3))
    assert cold_keys(s3) == set()


# --- re-runs, dry runs, transient errors -----------------------------------------------------


def test_rerun_skips_complete_archives_then_deletes_on_request(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    first = run(csv, tmp_path)
    assert first[0]["status"] == "archived"
    tarball_etags = {k: s3.head_object(Bucket=COLD, Key=k)["ETag"] for k in cold_keys(s3)}

    loopback.clear_faults()
    second = run(csv, tmp_path)
    assert second[0]["status"] == "skipped"
    assert writes(loopback) == {}

    third = run(csv, tmp_path, delete_source=True)  # deletes against the recorded listing
    assert third[0]["status"] == "skipped" and third[0]["deleted"] == len(originals)
    assert source_keys(s3) == {}
    assert {k: s3.head_object(Bucket=COLD, Key=k)["ETag"] for k in cold_keys(s3)} == tarball_etags


def test_rerun_refuses_to_delete_objects_changed_since_the_recorded_run(
    s3, seed, plates_csv, tmp_path
):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    run(csv, tmp_path)
    changed = sorted(originals)[0]
    s3.put_object(Bucket=LIVE, Key=changed, Body=b"a different size")
    with pytest.raises(PlatesFailedError) as failed:
        run(csv, tmp_path, delete_source=True)
    assert repr(changed) in failed.value.summary[0]["message"]
    assert set(source_keys(s3)) == set(originals)


def test_incomplete_archive_is_redone(s3, seed, plates_csv, tmp_path):
    seed(SPACED)
    csv = plates_csv(SPACED)
    run(csv, tmp_path)
    etag_sidecar = next(k for k in cold_keys(s3) if k.endswith("_backend.etag"))
    s3.delete_object(Bucket=COLD, Key=etag_sidecar)
    again = run(csv, tmp_path)
    assert again[0]["status"] == "archived"
    assert etag_sidecar in cold_keys(s3)


def test_dry_run_writes_nothing(s3, seed, plates_csv, tmp_path, loopback):
    originals = seed(SPACED)
    loopback.clear_faults()
    result = run(plates_csv(SPACED), tmp_path, dry_run=True, delete_source=True)
    assert result[0]["status"] == "dry-run"
    assert result[0]["objects"] == len(originals)
    assert result[0]["bytes"] == sum(len(v) for v in originals.values())
    assert writes(loopback) == {}
    assert not (tmp_path / "scratch").exists()


def test_throttled_endpoint_still_archives_everything(s3, seed, plates_csv, tmp_path, loopback):
    originals = seed(SPACED)
    loopback.throttle(rate=0.3, operation="GetObject")
    loopback.throttle(rate=0.3, operation="ListObjects")
    result = run(plates_csv(SPACED), tmp_path, delete_source=True)
    assert result[0]["status"] == "archived" and result[0]["deleted"] == len(originals)
    assert source_keys(s3) == {}


def test_500s_and_throttling_on_every_call_type_lose_nothing(
    s3, seed, plates_csv, tmp_path, loopback
):
    """A share of every request, whatever its kind, answered 500 InternalError or 503 SlowDown:
    the plate is archived, verified and deleted, then restored byte-identical."""
    from flows.restore import restore_plates

    originals = seed(SPACED)
    loopback.inject_error(
        status=500, code="InternalError", message="We encountered an internal error", rate=0.08
    )
    loopback.throttle(rate=0.08)
    csv = plates_csv(SPACED)
    (row,) = run(csv, tmp_path, delete_source=True, storage_class="STANDARD")
    assert row["status"] == "archived" and row["deleted"] == len(originals)
    (back,) = restore_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "r"), poll_interval=0.1
    )
    assert back["status"] == "restored"
    injected = sum(r.hits for r in loopback.injector.rules)
    assert injected > 10  # the faults did happen
    loopback.clear_faults()
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body


@pytest.mark.parametrize("streaming", [False, True])
def test_connections_cut_mid_body_on_upload_and_download_lose_nothing(
    s3, seed, plates_csv, tmp_path, loopback, streaming
):
    """A share of downloads broken off after 4 KiB of their body, and of uploads after the server
    read 4 KiB of theirs: the plate is archived, verified and deleted, then restored
    byte-identical; no cut body is taken for a whole one."""
    from flows.restore import restore_plates

    # the images' tarball is big enough for a multipart upload (parts of 5 MiB)
    originals = seed(SPACED, shape=replace(SMALL, images=3, image_bytes=4 * 1024 * 1024))
    cuts = [
        loopback.cut_connections("GetObject", 4096, rate=0.1),
        loopback.cut_connections("ListObjects", 512, times=2),  # the first two listings
        # two restored members (16 KiB each) cut on their way back up
        loopback.cut_connections(
            "PutObject", 4096, direction="request", times=2, key_pattern=r"_Illum\w+\.npy$"
        ),
        loopback.cut_connections("MultipartPut", 4096, direction="request", times=1),
    ]
    csv = plates_csv(SPACED)
    (row,) = run(
        csv,
        tmp_path,
        delete_source=True,
        storage_class="STANDARD",
        streaming=streaming,
        part_size_mib=5,
    )
    assert row["status"] == "archived" and row["deleted"] == len(originals)
    (back,) = restore_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "r"), poll_interval=0.1
    )
    assert back["status"] == "restored"
    assert all(rule.hits for rule in cuts), [rule.hits for rule in cuts]  # the cuts did happen
    loopback.clear_faults()
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body
    assert not s3.list_multipart_uploads(Bucket=COLD).get("Uploads")


def test_zstd_archives_read_with_gnu_tar(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    result = run(plates_csv(SPACED), tmp_path, compression="zstd", storage_class="STANDARD")
    members = []
    for bundle in result[0]["tarballs"].values():
        assert bundle["key"].endswith(".tar.zst")
        path = tmp_path / "t.tar.zst"
        s3.download_file(COLD, bundle["key"], str(path))
        members += subprocess.run(
            ["tar", "--zstd", "--quoting-style=literal", "-tf", str(path)],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
    tag = result[0]["tag"]
    assert sorted(members) == sorted(f"{tag}/{k.removeprefix('projects/')}" for k in originals)


# --- plates in parallel ---------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [1, 2])
def test_max_parallel_plates_bounds_concurrency(s3, seed, plates_csv, tmp_path, loopback, parallel):
    seed(SPACED, PLATE_B)
    # every tarball upload takes 3 s: each plate lasts 6 s or more, whatever the machine's load
    loopback.on_request("PutObject", r"\.tar\.gz$", lambda: time.sleep(3), times=100)
    result = run(plates_csv(SPACED, PLATE_B), tmp_path, max_parallel_plates=parallel)
    (_, first_end), (second_start, _) = sorted((r["started"], r["finished"]) for r in result)
    overlap = second_start < first_end
    assert overlap is (parallel == 2)


def test_two_runs_never_archive_the_same_plate_at_once(s3, seed, plates_csv, tmp_path):
    seed(SPACED)
    csv = plates_csv(SPACED)
    with ThreadPoolExecutor(2) as pool:
        runs = [pool.submit(run, csv, tmp_path / str(i)) for i in range(2)]
        rows = [r.result()[0] for r in runs]
    assert sorted(r["status"] for r in rows) == ["archived", "skipped"]
    archived = next(r for r in rows if r["status"] == "archived")
    skipped = next(r for r in rows if r["status"] == "skipped")
    assert skipped["started"] >= archived["finished"]  # it waited for the plate's slot


@pytest.mark.parametrize("streaming", [False, True])
def test_incomplete_upload_a_crashed_run_left_is_aborted(s3, seed, plates_csv, tmp_path, streaming):
    seed(SPACED)
    tarball = f"imaging_analysis/{PROJECT}/plates/{TAG}_backend.tar.gz"
    s3.create_multipart_upload(Bucket=COLD, Key=tarball)  # what a killed run leaves behind
    s3.create_multipart_upload(Bucket=COLD, Key=tarball + ".other")  # not ours: left alone
    (row,) = run(plates_csv(SPACED), tmp_path, streaming=streaming)
    assert row["status"] == "archived" and row["aborted_uploads"] == 1
    assert "aborted 1 incomplete upload" in row["message"]
    left = [u["Key"] for u in s3.list_multipart_uploads(Bucket=COLD).get("Uploads", [])]
    assert left == [tarball + ".other"]
