"""Deleting archived sources from a versioned live bucket: refused until the caller says what
deleting means there; "purge" deletes exactly the archived versions, "delete-marker" places
markers and says what stays billed; older versions and locked versions are never deleted."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, source_keys
from prefect.client.orchestration import get_client
from prefect.exceptions import ParameterTypeError

from flows.archive import archive_plates
from tasks.core.errors import PlatesFailedError, VersioningChoiceError

WRITES = {"PutObject", "MultipartPost", "MultipartPut", "DeleteObjects", "DeleteObject"}
PREFIX = f"projects/{PROJECT}/"


def run(csv: str, tmp_path, **kwargs):
    return archive_plates(
        csv,
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(tmp_path / "scratch"),
        storage_class="STANDARD",
        **kwargs,
    )


def versions(s3) -> tuple[dict[tuple[str, str], bool], list[str]]:
    """{(key, VersionId): is latest} and the keys with a delete marker, under the plates."""
    found, markers = {}, []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=LIVE, Prefix=PREFIX):
        for v in page.get("Versions", []):
            if "/workspace/backup/" not in v["Key"]:  # not the listings coldflow writes
                found[(v["Key"], v["VersionId"])] = v["IsLatest"]
        markers += [m["Key"] for m in page.get("DeleteMarkers", [])]
    return found, markers


def versioned(s3) -> None:
    s3.put_bucket_versioning(Bucket=LIVE, VersioningConfiguration={"Status": "Enabled"})


@pytest.mark.parametrize("status", ["Enabled", "Suspended"])
def test_delete_source_on_a_versioned_bucket_needs_a_choice_before_any_write(
    s3, seed, plates_csv, tmp_path, loopback, status
):
    originals = seed(SPACED)
    s3.put_bucket_versioning(Bucket=LIVE, VersioningConfiguration={"Status": status})
    loopback.clear_faults()  # and the request counts
    with pytest.raises(VersioningChoiceError) as refused:
        run(plates_csv(SPACED), tmp_path, delete_source=True)
    message = str(refused.value)
    assert "'delete-marker'" in message and "'purge'" in message and status in message
    assert not {op for op in loopback.request_counts if op in WRITES}
    assert set(source_keys(s3)) == set(originals)


def test_the_command_line_exits_2_with_one_line_naming_both_choices(
    s3, seed, plates_csv, tmp_path, capfd
):
    from flows import cli

    seed(SPACED)
    versioned(s3)
    argv = ["archive", plates_csv(SPACED), "--project-name", PROJECT, "--batch-id", BATCH]
    argv += ["--bucket", LIVE, "--cold-bucket", COLD, "--delete-source"]
    argv += ["--scratch-dir", str(tmp_path / "s")]
    assert cli.main(argv) == 2
    err = capfd.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("coldflow archive:") and "--versioned-delete" in last
    assert "'delete-marker'" in last and "'purge'" in last


def test_an_unknown_choice_is_refused_before_any_s3_call(seed, plates_csv, tmp_path, loopback):
    seed(SPACED)
    loopback.clear_faults()  # and the request counts
    with pytest.raises(ParameterTypeError, match="versioned_delete"):
        run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="remove")
    assert not loopback.request_counts


def test_a_choice_on_an_unversioned_bucket_changes_nothing_and_says_so(
    s3, seed, plates_csv, tmp_path, caplog
):
    originals = seed(SPACED)
    with caplog.at_level(logging.INFO, logger="prefect.flow_runs"):
        (row,) = run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="purge")
    assert row["status"] == "archived" and row["deleted"] == len(originals), row["message"]
    assert not source_keys(s3)
    said = [r.getMessage() for r in caplog.records if "is not versioned" in r.getMessage()]
    assert len(said) == 1 and "changes nothing" in said[0], said
    assert s3.get_bucket_versioning(Bucket=LIVE).get("Status") is None


def test_purge_deletes_exactly_the_archived_versions(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    versioned(s3)
    older = sorted(originals)[0]
    s3.put_object(Bucket=LIVE, Key=older, Body=originals[older])  # the seeded one is now older
    before, _ = versions(s3)
    noncurrent = {kv for kv, latest in before.items() if not latest}
    (row,) = run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="purge")
    assert row["status"] == "archived" and row["deleted"] == len(originals), row["message"]
    after, markers = versions(s3)
    assert set(after) == noncurrent and not markers  # only the version that was there before
    assert "1 older versions" in row["message"] and "by VersionId" in row["message"]


def test_purge_never_touches_a_version_written_after_the_gate(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED)
    versioned(s3)
    late = sorted(originals)[-1]
    loopback.on_request(
        "DeleteObjects", "", lambda: s3.put_object(Bucket=LIVE, Key=late, Body=b"written late")
    )
    (row,) = run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="purge")
    assert row["status"] == "archived" and row["deleted"] == len(originals), row["message"]
    after, markers = versions(s3)
    assert [k for k, _ in after] == [late] and all(after.values()) and not markers
    assert s3.get_object(Bucket=LIVE, Key=late)["Body"].read() == b"written late"


def test_delete_marker_keeps_the_versions_and_says_what_stays_billed(
    s3, seed, plates_csv, tmp_path
):
    originals = seed(SPACED)
    versioned(s3)
    (row,) = run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="delete-marker")
    assert row["status"] == "archived" and row["deleted"] == len(originals), row["message"]
    assert not source_keys(s3)
    after, markers = versions(s3)
    assert {k for k, _ in after} == set(originals) and not any(after.values())
    assert sorted(markers) == sorted(originals)
    assert f"{sum(map(len, originals.values())):,} bytes stay billed" in row["message"]
    with get_client(sync_client=True) as client:
        (estimate,) = [a for a in client.read_latest_artifacts() if a.key == "archive-estimate"]
    assert "delete markers:** the archived" in estimate.data and "stay billed" in estimate.data


def test_purge_never_deletes_a_version_under_legal_hold_or_retention(
    s3, seed, plates_csv, tmp_path
):
    s3.delete_bucket(Bucket=LIVE)
    s3.create_bucket(Bucket=LIVE, ObjectLockEnabledForBucket=True)  # versioned, lockable
    originals = seed(SPACED)
    held, retained = sorted(originals)[:2]
    s3.put_object_legal_hold(Bucket=LIVE, Key=held, LegalHold={"Status": "ON"})
    until = datetime.now(UTC) + timedelta(days=1)
    s3.put_object_retention(
        Bucket=LIVE, Key=retained, Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until}
    )
    with pytest.raises(PlatesFailedError) as failed:
        run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="purge")
    (row,) = failed.value.summary
    assert row["status"] == "failed" and row["verified"]
    assert row["deleted"] == len(originals) - 2 and row["kept"] == 2
    assert held in row["message"] and retained in row["message"]
    assert "(legal hold)" in row["message"]
    assert f"(COMPLIANCE until {until.year}-" in row["message"]
    assert set(source_keys(s3)) == {held, retained}


def test_delete_marker_on_a_locked_bucket_places_markers_and_says_the_locked_versions_remain(
    s3, seed, plates_csv, tmp_path
):
    s3.delete_bucket(Bucket=LIVE)
    s3.create_bucket(Bucket=LIVE, ObjectLockEnabledForBucket=True)  # versioned, lockable
    originals = seed(SPACED)
    held = sorted(originals)[0]
    s3.put_object_legal_hold(Bucket=LIVE, Key=held, LegalHold={"Status": "ON"})
    (row,) = run(plates_csv(SPACED), tmp_path, delete_source=True, versioned_delete="delete-marker")
    assert row["status"] == "archived" and row["deleted"] == len(originals), row["message"]
    assert "Object Lock (on)" in row["message"] and "remain until their lock ends" in row["message"]
    after, markers = versions(s3)
    assert sorted(markers) == sorted(originals)  # S3 places a marker over a held version too
    assert {k for k, _ in after} == set(originals)  # every version, the held one included
