"""restore_plates: round trips, old GNU tar archives, and tarballs that must be refused."""

from __future__ import annotations

import hashlib
import io
import subprocess
import tarfile

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, fill_disk, small_scratch, source_keys

from flows.archive import archive_plates
from flows.restore import restore_plates
from tasks.core.errors import PlatesFailedError

TAG = f"{PROJECT}_{BATCH}_{SPACED[0]}"
PLATES = f"imaging_analysis/{PROJECT}/plates/"
BACKUP = f"projects/{PROJECT}/workspace/backup/"
IMAGES = f"{PROJECT}/{BATCH}/images/{SPACED[1]}/"
BACKEND = f"{PROJECT}/workspace/backend/{BATCH}/{SPACED[0]}/"
UTF8_KEY = f"projects/{IMAGES}Images/ünïcødé ✓.tiff"


def restore(csv: str, tmp_path, **kwargs):
    kwargs.setdefault("poll_interval", 0.2)
    kwargs.setdefault("max_poll_interval", 0.5)
    return restore_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "s"), **kwargs
    )


@pytest.mark.parametrize("streaming", [False, True], ids=["staged", "streaming"])
def test_round_trip_is_byte_identical(s3, seed, plates_csv, tmp_path, loopback, streaming):
    originals = seed(SPACED)
    s3.put_object(Bucket=LIVE, Key=UTF8_KEY, Body=b"utf-8 named")
    originals[UTF8_KEY] = b"utf-8 named"
    csv = plates_csv(SPACED)
    archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"), delete_source=True
    )
    assert source_keys(s3) == {}
    loopback.tiers.durations["Standard"] = 1.0

    result = restore(csv, tmp_path, streaming=streaming)
    assert result[0]["status"] == "restored" and result[0]["verified"] == len(originals)
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body, key
    again = restore(csv, tmp_path, streaming=streaming)
    assert again[0]["skipped"] == len(originals) and again[0]["uploaded"] == 0


def test_only_the_chosen_bundle_comes_back(s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"), delete_source=True
    )
    restore(csv, tmp_path, bundles=["backend"])
    back = set(source_keys(s3))
    assert back == {k for k in originals if "/workspace/backend/" in k}


def put_archive(
    s3, tarball: bytes, listing: bytes, md5: str | None = None, storage_class: str = "GLACIER"
) -> None:
    """An archive for SPACED in the established layout: tarball, sidecars, listing."""
    name = f"{TAG}_backend.tar.gz"
    s3.put_object(Bucket=COLD, Key=PLATES + name, Body=tarball, StorageClass=storage_class)
    etag = s3.head_object(Bucket=COLD, Key=PLATES + name)["ETag"].strip('"')
    digest = md5 or hashlib.md5(tarball).hexdigest()
    s3.put_object(
        Bucket=COLD, Key=f"{PLATES}{TAG}_backend.md5", Body=f"{digest}  {name}\n".encode()
    )
    s3.put_object(Bucket=COLD, Key=f"{PLATES}{TAG}_backend.etag", Body=f"{etag}\n".encode())
    s3.put_object(Bucket=LIVE, Key=f"{BACKUP}{TAG}_file_listing_s3.txt", Body=listing)


def test_archive_made_with_gnu_tar_restores(s3, plates_csv, tmp_path):
    files = {f"{BACKEND}{SPACED[0]}.sqlite": b"sqlite " * 999, f"{BACKEND}with space.csv": b"a,b\n"}
    root = tmp_path / "stage"
    for name, body in files.items():
        path = root / TAG / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(body)
    tarball = tmp_path / "old.tar.gz"
    subprocess.run(
        ["tar", "-czf", str(tarball), f"{TAG}/{PROJECT}/workspace"], cwd=root, check=True
    )  # as the shell scripts did: directory entries included
    listing = b"".join(sorted(f"{k}\t{len(v)}\n".encode() for k, v in files.items()))
    put_archive(s3, tarball.read_bytes(), listing)

    result = restore(plates_csv(SPACED), tmp_path, bundles=["backend"])
    assert result[0]["status"] == "restored"
    for name, body in files.items():
        assert s3.get_object(Bucket=LIVE, Key="projects/" + name)["Body"].read() == body


def evil_tarball(kind: str) -> tuple[bytes, str]:
    """A tarball with one good member and one that must be refused."""
    good = f"{TAG}/{BACKEND}good.csv"
    bad = {
        "dotdot": f"{TAG}/{BACKEND}../../../../escape.csv",
        "absolute": "/etc/coldflow-escape",
        "symlink": f"{TAG}/{BACKEND}link",
        "other-plate": f"{TAG}/{PROJECT}/workspace/backend/{BATCH}/OTHERPLATE/x.csv",
        "outside-tag": f"someone_else/{BACKEND}x.csv",
    }[kind]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name in (good, bad):
            info = tarfile.TarInfo(name)
            if kind == "symlink" and name == bad:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
                tar.addfile(info)
            else:
                info.size = 4
                tar.addfile(info, io.BytesIO(b"data"))
    return buf.getvalue(), bad


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "other-plate", "outside-tag"])
@pytest.mark.parametrize("streaming", [False, True], ids=["staged", "streaming"])
def test_unsafe_member_refuses_the_whole_tarball(s3, plates_csv, tmp_path, kind, streaming):
    tarball, bad = evil_tarball(kind)
    put_archive(s3, tarball, f"{BACKEND}good.csv\t4\n".encode(), storage_class="STANDARD")
    with pytest.raises(PlatesFailedError) as failed:
        restore(plates_csv(SPACED), tmp_path, bundles=["backend"], streaming=streaming)
    message = failed.value.summary[0]["message"]
    assert repr(bad.rstrip("/")) in message or repr(bad) in message
    assert source_keys(s3) == {}  # not even the good member


def test_md5_mismatch_stops_the_plate_before_any_upload(s3, plates_csv, tmp_path):
    good_only = io.BytesIO()
    with tarfile.open(fileobj=good_only, mode="w:gz") as tar:
        info = tarfile.TarInfo(f"{TAG}/{BACKEND}good.csv")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"data"))
    put_archive(s3, good_only.getvalue(), f"{BACKEND}good.csv\t4\n".encode(), md5="0" * 32)
    with pytest.raises(PlatesFailedError) as failed:
        restore(plates_csv(SPACED), tmp_path, bundles=["backend"])
    assert (
        "its .md5 sidecar says 00000000000000000000000000000000"
        in (failed.value.summary[0]["message"])
    )
    assert source_keys(s3) == {}


def test_missing_archive_names_the_missing_keys(s3, seed, plates_csv, tmp_path):
    seed(SPACED)
    archive_plates(plates_csv(SPACED), PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"))
    csv = plates_csv(SPACED, ("NEVER1", "NEVER1_full"))
    s3.delete_object(Bucket=LIVE, Key=f"{BACKUP}{TAG}_file_listing_s3.txt")
    with pytest.raises(PlatesFailedError) as failed:
        restore(csv, tmp_path)
    rows = {r["plate_id"]: r["message"] for r in failed.value.summary}
    assert f"s3://{LIVE}/{BACKUP}{TAG}_file_listing_s3.txt" in rows[SPACED[0]]
    never = f"{PROJECT}_{BATCH}_NEVER1"
    assert f"s3://{COLD}/{PLATES}{never}_images_illum_analysis.tar.gz" in rows["NEVER1"]
    assert f"s3://{COLD}/{PLATES}{never}_backend.tar.gz" in rows["NEVER1"]


def test_a_lifecycle_rule_that_archived_the_sidecars_too(s3, seed, plates_csv, tmp_path, loopback):
    """A cold bucket whose lifecycle rule moved everything to Glacier: sidecars and listings
    are restored along with the tarballs (one estimate, one wait), never read raw."""
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"), delete_source=True
    )
    listed = s3.list_objects_v2(Bucket=COLD, Prefix=PLATES)["Contents"]
    cold = [o["Key"] for o in listed]
    for key in (o["Key"] for o in listed if o.get("StorageClass", "STANDARD") == "STANDARD"):
        # what the rule does to sidecars and listings (tarballs are DEEP_ARCHIVE already)
        s3.copy_object(
            Bucket=COLD,
            Key=key,
            CopySource={"Bucket": COLD, "Key": key},
            StorageClass="GLACIER",
            MetadataDirective="COPY",
        )
    loopback.tiers.durations["Standard"] = 1.0
    loopback.tiers.requests.clear()
    result = restore(csv, tmp_path)
    assert result[0]["status"] == "restored" and result[0]["verified"] == len(originals)
    requested = {r[1] for r in loopback.tiers.requests}
    assert {k for k in cold if k.endswith((".md5", ".etag", ".tar.gz"))} <= requested


def test_scratch_filling_up_mid_restore_fails_the_plate_and_a_rerun_finishes(
    s3, seed, plates_csv, tmp_path, loopback
):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"), delete_source=True
    )
    with small_scratch(tmp_path / "small", "300m") as small:
        filler = small / "someone-else.bin"
        loopback.on_request(
            "GetObject", r"_images_illum_analysis\.tar\.gz$", lambda: fill_disk(filler)
        )
        with pytest.raises(PlatesFailedError) as failed:
            restore_plates(
                csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(small), poll_interval=0.1
            )
        row = failed.value.summary[0]
        assert row["status"] == "failed"
        assert f"scratch {small} filled up while the plate was on it" in row["message"]
        assert not (small / TAG).exists()  # the plate's scratch folder went
        filler.unlink()
        (row,) = restore_plates(
            csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(small), poll_interval=0.1
        )
    assert row["status"] == "restored" and row["verified"] == len(originals)
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body, key
