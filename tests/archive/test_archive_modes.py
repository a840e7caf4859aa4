"""Staged and streaming archives hold the same members with the same bytes, for gzip and zstd.

Members are written in the order their downloads finish, so the tarballs' bytes (and their
MD5 and ETag sidecars) differ between two runs; what they hold does not."""

from __future__ import annotations

import subprocess

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, source_keys

from flows.archive import archive_plates
from loopback.seed import PlateShape
from tasks.core.errors import PlatesFailedError

# a backend blob above the read-ahead limit and a tarball of several multipart parts
SHAPE = PlateShape(
    images=12,
    image_bytes=256 * 1024,
    illum_bytes=64 * 1024,
    csv_bytes=32 * 1024,
    backend_bytes=20 * 1024 * 1024,
)
BACKUP = f"projects/{PROJECT}/workspace/backup/"


def archive_once(s3, csv: str, tmp_path, compression: str, streaming: bool) -> dict:
    """Archive, collect every artifact of the archive (a tarball as its sorted verbose
    listing and the MD5 of every member), then clear it for the next mode."""
    rows = archive_plates(
        csv,
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(tmp_path / "s"),
        compression=compression,
        streaming=streaming,
        storage_class="STANDARD",
    )
    assert rows[0]["status"] == "archived"
    seen: dict[str, bytes | str] = {}
    for bucket, prefix in ((COLD, ""), (LIVE, BACKUP)):
        for o in s3.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
            body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            if ".tar." in o["Key"]:
                path = tmp_path / "t"
                path.write_bytes(body)
                flag = "--zstd" if compression == "zstd" else "--gzip"
                listed = subprocess.run(
                    ["tar", flag, "--quoting-style=literal", "-tvf", str(path)],
                    check=True,
                    capture_output=True,
                ).stdout
                sums = subprocess.run(
                    ["tar", flag, "-xf", str(path), "--to-command=md5sum"],
                    check=True,
                    capture_output=True,
                ).stdout
                body = sorted(listed.splitlines()) + sorted(sums.splitlines())
                seen[o["Key"] + " multipart"] = "-" in o["ETag"]
            if o["Key"].endswith((".md5", ".etag")):  # the tarball's bytes: members' order
                body = body.decode().split()[-1] if o["Key"].endswith(".md5") else "etag"
            if "untrimmed" not in o["Key"]:  # its times differ between two uploads
                seen[o["Key"]] = body
            s3.delete_object(Bucket=bucket, Key=o["Key"])
    return seen


@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_streaming_equals_staged(s3, seed, plates_csv, tmp_path, compression):
    seed(SPACED, shape=SHAPE)
    csv = plates_csv(SPACED)
    staged = archive_once(s3, csv, tmp_path, compression, streaming=False)
    streamed = archive_once(s3, csv, tmp_path, compression, streaming=True)
    assert staged == streamed
    assert any(k.endswith(" multipart") and v for k, v in staged.items())
    assert any(len(v) > 20 for k, v in staged.items() if k.endswith((".tar.gz", ".tar.zst")))


@pytest.mark.parametrize("streaming", [False, True], ids=["staged", "streaming"])
def test_a_blob_changed_between_its_ranges_fails_the_plate(
    s3, seed, plates_csv, tmp_path, loopback, streaming
):
    originals = seed(SPACED, shape=SHAPE)
    victim = next(k for k in originals if k.endswith(".sqlite"))  # read as three ranges
    arrived = []

    def second_range_changes_it() -> None:
        arrived.append(1)
        if len(arrived) == 2:
            s3.put_object(Bucket=LIVE, Key=victim, Body=b"changed")

    loopback.on_request("GetObject", r"\.sqlite$", second_range_changes_it, times=3)
    with pytest.raises(PlatesFailedError) as failed:
        archive_plates(
            plates_csv(SPACED),
            PROJECT,
            BATCH,
            LIVE,
            COLD,
            scratch_dir=str(tmp_path / "s"),
            streaming=streaming,
            delete_source=True,
        )
    assert f"{victim} changed after it was listed" in failed.value.summary[0]["message"]
    assert set(source_keys(s3)) == set(originals)
    assert not [
        o
        for o in s3.list_objects_v2(Bucket=COLD).get("Contents", [])
        if o["Key"].endswith(".etag") and "backend" in o["Key"]
    ]
    assert s3.list_multipart_uploads(Bucket=COLD).get("Uploads", []) == []
