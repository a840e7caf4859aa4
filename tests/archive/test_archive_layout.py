"""The archive layout, byte for byte, on a plate with a space in its name and UTF-8 keys."""

from __future__ import annotations

import hashlib
import os
import shlex
import subprocess
import tarfile
from pathlib import Path

import boto3
import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, fresh_endpoint, seed_into, source_keys

from flows.archive import archive_plates

TAG = f"{PROJECT}_{BATCH}_{SPACED[0]}"
COLD_PREFIX = f"imaging_analysis/{PROJECT}/plates/"
BACKUP = f"projects/{PROJECT}/workspace/backup/"
UTF8_KEY = f"projects/{PROJECT}/{BATCH}/images/{SPACED[1]}/Images/ünïcødé café ✓.tiff"
MARKER = f"projects/{PROJECT}/{BATCH}/images/{SPACED[1]}/Images/"


# its module fixtures are built once, in one test process
pytestmark = pytest.mark.xdist_group("archive-layout")


@pytest.fixture(scope="module")
def archived(loopback, tmp_path_factory):
    """One archived plate that every test here inspects (archiving once keeps them fast)."""
    s3 = fresh_endpoint(loopback)
    originals = seed_into(s3, SPACED)
    s3.put_object(Bucket=LIVE, Key=UTF8_KEY, Body=b"utf-8 named object")
    originals[UTF8_KEY] = b"utf-8 named object"
    s3.put_object(Bucket=LIVE, Key=MARKER, Body=b"")  # a "directory" placeholder
    tmp = tmp_path_factory.mktemp("layout")
    (tmp / "plates.csv").write_text(f"plate_id,plate_id_full\n{SPACED[0]},{SPACED[1]}\n")
    result = archive_plates(
        str(tmp / "plates.csv"), PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp / "scratch")
    )
    return originals, result, tmp


@pytest.fixture(scope="module")
def s3(archived, loopback):
    return boto3.client("s3", endpoint_url=loopback.endpoint_url)


def body(s3, bucket: str, key: str) -> bytes:
    """An object's bytes; archived tarballs are restored first (instant on the loopback)."""
    if s3.head_object(Bucket=bucket, Key=key).get("StorageClass") in {"GLACIER", "DEEP_ARCHIVE"}:
        s3.restore_object(Bucket=bucket, Key=key, RestoreRequest={"Days": 1})
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


def expected_listing(originals: dict[str, bytes]) -> bytes:
    lines = sorted(
        f"{k.removeprefix('projects/')}\t{len(v)}\n".encode() for k, v in originals.items()
    )
    return b"".join(lines)


def test_keys_in_both_buckets(s3, archived):
    cold = {o["Key"] for o in s3.list_objects_v2(Bucket=COLD)["Contents"]}
    assert cold == {
        f"{COLD_PREFIX}{TAG}_images_illum_analysis.tar.gz",
        f"{COLD_PREFIX}{TAG}_images_illum_analysis.md5",
        f"{COLD_PREFIX}{TAG}_images_illum_analysis.etag",
        f"{COLD_PREFIX}{TAG}_backend.tar.gz",
        f"{COLD_PREFIX}{TAG}_backend.md5",
        f"{COLD_PREFIX}{TAG}_backend.etag",
        f"{COLD_PREFIX}{TAG}_file_listing_untrimmed_s3.txt",
    }
    backup = {o["Key"] for o in s3.list_objects_v2(Bucket=LIVE, Prefix=BACKUP)["Contents"]}
    assert backup == {
        f"{BACKUP}{TAG}_file_listing_s3.txt",
        f"{BACKUP}{TAG}_file_listing_tar.txt",
        f"{BACKUP}{TAG}_delete_s3.sh",
    }
    tarball = s3.head_object(Bucket=COLD, Key=f"{COLD_PREFIX}{TAG}_backend.tar.gz")
    assert tarball["StorageClass"] == "DEEP_ARCHIVE"


def test_listings_are_sorted_identical_and_complete(s3, archived):
    originals, _, _ = archived
    s3_listing = body(s3, LIVE, f"{BACKUP}{TAG}_file_listing_s3.txt")
    tar_listing = body(s3, LIVE, f"{BACKUP}{TAG}_file_listing_tar.txt")
    assert s3_listing == expected_listing(originals)
    assert tar_listing == s3_listing
    assert b"\xc3\xbcn\xc3\xafc\xc3\xb8d\xc3\xa9 caf\xc3\xa9" in s3_listing  # raw UTF-8
    assert not any(line.split(b"\t")[0].endswith(b"/") for line in s3_listing.splitlines())


def test_untrimmed_listing_is_aws_s3_ls_format(s3, archived):
    originals, _, _ = archived
    text = body(s3, COLD, f"{COLD_PREFIX}{TAG}_file_listing_untrimmed_s3.txt").decode()
    lines = text.splitlines()
    assert len(lines) == len(originals) + 1  # the placeholder is listed here, as by the CLI
    for line in lines:
        date, time, size, key = line[:10], line[11:19], line[20:30], line[31:]
        assert date.count("-") == 2 and time.count(":") == 2 and line[19] == " "
        expected = originals.get(key, b"" if key == MARKER else None)
        assert expected is not None, key
        assert int(size) == len(expected) and len(size) == 10


def test_sidecars(s3, archived):
    _, result, _ = archived
    for bundle in ("images_illum_analysis", "backend"):
        name = f"{TAG}_{bundle}.tar.gz"
        data = body(s3, COLD, COLD_PREFIX + name)
        md5 = body(s3, COLD, f"{COLD_PREFIX}{TAG}_{bundle}.md5").decode()
        assert md5 == f"{hashlib.md5(data).hexdigest()}  {name}\n"
        etag = body(s3, COLD, f"{COLD_PREFIX}{TAG}_{bundle}.etag").decode()
        remote = s3.head_object(Bucket=COLD, Key=COLD_PREFIX + name)["ETag"].strip('"')
        assert etag == f"{remote}\n"
        assert result[0]["tarballs"][bundle]["etag"] == remote


def test_delete_script_names_the_four_prefixes(s3, archived):
    script = body(s3, LIVE, f"{BACKUP}{TAG}_delete_s3.sh").decode()
    root = f"s3://{LIVE}/projects/{PROJECT}"
    assert script.splitlines() == [
        f"aws s3 rm --recursive '{root}/{BATCH}/images/{SPACED[1]}/'",  # quoted: a space
        f"aws s3 rm --recursive {root}/{BATCH}/illum/{SPACED[0]}/",
        f"aws s3 rm --recursive {root}/workspace/analysis/{BATCH}/{SPACED[0]}/",
        f"aws s3 rm --recursive {root}/workspace/backend/{BATCH}/{SPACED[0]}/",
    ]
    for line in script.splitlines():  # the shell reads each back as three words
        assert len(shlex.split(line)) == 5


def test_gnu_tar_reads_and_extracts_to_the_original_keys(s3, archived, tmp_path):
    originals, _, _ = archived
    env = dict(os.environ, LC_ALL="C.UTF-8")
    members: list[str] = []
    out = tmp_path / "out"
    out.mkdir()
    for bundle in ("images_illum_analysis", "backend"):
        path = tmp_path / f"{bundle}.tar.gz"
        path.write_bytes(body(s3, COLD, f"{COLD_PREFIX}{TAG}_{bundle}.tar.gz"))
        listed = subprocess.run(
            ["tar", "--quoting-style=literal", "-tzf", str(path)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        members += listed.splitlines()
        subprocess.run(
            ["tar", "-xzf", str(path), "--strip-components=1", "-C", str(out)], env=env, check=True
        )
    assert sorted(members) == sorted(f"{TAG}/{k.removeprefix('projects/')}" for k in originals)
    for key, data in originals.items():
        assert (out / key.removeprefix("projects/")).read_bytes() == data, key


def test_members_are_plain_files_owned_by_root(s3, archived, tmp_path):
    path = tmp_path / "backend.tar.gz"
    path.write_bytes(body(s3, COLD, f"{COLD_PREFIX}{TAG}_backend.tar.gz"))
    with tarfile.open(path) as tar:
        infos = tar.getmembers()
    assert infos and all(i.isreg() and i.mode == 0o644 and i.uid == 0 for i in infos)


def test_sources_stay_without_delete_source(s3, archived):
    originals, result, _ = archived
    assert set(originals) <= set(source_keys(s3))
    assert result[0]["status"] == "archived" and result[0]["deleted"] == 0


def test_scratch_is_cleaned(archived):
    assert list(Path(archived[2] / "scratch").iterdir()) == []
