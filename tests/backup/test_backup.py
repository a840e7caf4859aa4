"""backup_bucket, restore_bucket and compare_buckets against the loopback endpoint."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import task_runs_of
from prefect import flow

from flows.backup import BackupFailedError, backup_bucket, compare_buckets, restore_bucket
from tasks.backup.copy import META_SOURCE_ETAG

SRC, BAK, NEW = "src-bucket", "bak-bucket", "fresh-bucket"
KEYS = ["plain.txt", "sp ace.txt", "plus+sign.txt", "per%cent.txt", "ünïcödé.txt", "amp&er.txt"]
FAST = {"poll_interval": 0.2, "max_poll_interval": 0.5, "timeout": 60}


@pytest.fixture
def buckets(s3):
    for b in (SRC, BAK):
        s3.create_bucket(Bucket=b)
    return s3


def put(s3, key: str, body: bytes, **extra) -> None:
    s3.put_object(Bucket=SRC, Key=key, Body=body, **extra)


def tags(s3, bucket: str, key: str) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in s3.get_object_tagging(Bucket=bucket, Key=key)["TagSet"]}


#: What reading both buckets' facts asks (versioning, encryption, Object Lock, lifecycle).
FACTS = {
    "GetBucketVersioning": 2,
    "GetBucketEncryption": 2,
    "GetObjectLockConfiguration": 2,
    "GetBucketLifecycleConfiguration": 2,
}


def run(**kw):
    return backup_bucket(SRC, BAK, work_dir=kw.pop("work_dir", "/tmp/coldflow-test"), **kw)


def test_new_changed_deleted_and_unchanged_across_runs(buckets, loopback):
    s3 = buckets
    for k in KEYS:
        put(
            s3,
            k,
            b"v1 " + k.encode(),
            ContentType="text/plain",
            Metadata={"lab": "x"},
            Tagging="project=p1&owner=me",
        )
    first = run()
    assert (first["copied"], first["unchanged"], first["tagged_deleted"]) == (len(KEYS), 0, 0)
    for k in KEYS:
        got = s3.get_object(Bucket=BAK, Key=k)
        assert got["Body"].read() == b"v1 " + k.encode()
        assert got["ContentType"] == "text/plain"
        assert got["Metadata"]["lab"] == "x"
        # one CopyObject: the copy's ETag is the source's (the record later runs compare)
        assert got["ETag"] == s3.head_object(Bucket=SRC, Key=k)["ETag"]
        assert tags(s3, BAK, k) == {"project": "p1", "owner": "me"}

    loopback.clear_faults()
    again = run()  # nothing changed: the buckets' facts and two listings, nothing else
    assert (again["copied"], again["tagged_deleted"], again["unchanged"]) == (0, 0, len(KEYS))
    assert loopback.request_counts == {**FACTS, "ListObjects": 2}

    put(s3, KEYS[0], b"v2 " + KEYS[0].encode())  # same size, other content, any age
    s3.delete_object(Bucket=SRC, Key=KEYS[1])
    s3.delete_object(Bucket=SRC, Key=KEYS[4])
    put(s3, "brand new.txt", b"new")
    third = run()
    assert (third["copied"], third["tagged_deleted"]) == (2, 2)
    assert s3.get_object(Bucket=BAK, Key=KEYS[0])["Body"].read() == b"v2 " + KEYS[0].encode()
    gone = tags(s3, BAK, KEYS[1])
    assert gone["Deleted"] == "True" and gone["project"] == "p1" and gone["owner"] == "me"
    assert len(gone["DeletedAt"]) == len("2026-11-22T01:02")
    assert s3.get_object(Bucket=BAK, Key=KEYS[4])["Body"].read()  # kept, never deleted

    loopback.clear_faults()
    fourth = run()  # idempotent: already tagged ones are not tagged again
    assert (fourth["copied"], fourth["tagged_deleted"]) == (0, 0)
    # the listings, and the deleted-keys ledger the backup listing showed
    assert loopback.request_counts == {**FACTS, "ListObjects": 2, "GetObject": 1}

    put(s3, KEYS[1], b"v1 " + KEYS[1].encode())  # the same bytes come back
    fifth = run()
    assert fifth["untagged"] == 1 and fifth["copied"] == 0
    assert "Deleted" not in tags(s3, BAK, KEYS[1]) and tags(s3, BAK, KEYS[1])["project"] == "p1"


def test_deleted_keys_ledger_read_only_when_needed(buckets, loopback):
    """A whole-bucket run learns from the backup listing whether the ledger exists; a key
    that sorts before the ledger's, or a prefix run, reads it with one GET."""
    s3 = buckets
    for k in ("!first.txt", "sub/a.txt", "sub/b.txt", "zed.txt"):
        put(s3, k, b"x")
    run()
    for k in ("!first.txt", "sub/a.txt"):
        s3.delete_object(Bucket=SRC, Key=k)
    assert run()["tagged_deleted"] == 2
    loopback.clear_faults()
    again = run()
    assert (again["tagged_deleted"], again["copied"], again["unchanged"]) == (0, 0, 4)
    # the ledger, read once (its key sorts after '!first.txt'), and not written again
    assert loopback.request_counts == {**FACTS, "ListObjects": 2, "GetObject": 1}

    put(s3, "sub/c.txt", b"x")
    s3.delete_object(Bucket=SRC, Key="sub/b.txt")
    first = run(prefix="sub/")
    assert (first["copied"], first["tagged_deleted"], first["unchanged"]) == (1, 1, 1)
    loopback.clear_faults()
    again = run(prefix="sub/")
    assert (again["copied"], again["tagged_deleted"], again["unchanged"]) == (0, 0, 3)
    assert loopback.request_counts == {**FACTS, "ListObjects": 2, "GetObject": 1}
    assert tags(s3, BAK, "sub/a.txt")["Deleted"] == "True"


def test_no_room_for_deletion_tags_is_said_clearly(buckets):
    s3 = buckets
    put(s3, "full.txt", b"x", Tagging="&".join(f"t{i}=v" for i in range(9)))
    run()
    s3.delete_object(Bucket=SRC, Key="full.txt")
    with pytest.raises(BackupFailedError, match="don't fit"):
        run()


def test_multipart_copy_keeps_metadata_and_tags(buckets):
    s3 = buckets
    body = bytes(range(256)) * (24 * 1024 * 1024 // 256)  # 24 MiB, above a 5 MiB threshold
    put(s3, "big.bin", body, ContentType="image/tiff", Metadata={"well": "A01"}, Tagging="k=v")
    result = run(multipart_threshold_mib=5)
    assert result["copied"] == 1 and result["bytes_copied"] == len(body)
    got = s3.get_object(Bucket=BAK, Key="big.bin")
    assert "-" in got["ETag"]  # a multipart copy...
    assert got["Body"].read() == body and got["ContentType"] == "image/tiff"
    assert got["Metadata"]["well"] == "A01" and tags(s3, BAK, "big.bin") == {"k": "v"}
    source_etag = s3.head_object(Bucket=SRC, Key="big.bin")["ETag"].strip('"')
    assert got["Metadata"][META_SOURCE_ETAG] == source_etag != got["ETag"].strip('"')
    again = run(multipart_threshold_mib=5)  # ...whose other ETag is not taken for a change
    assert again["copied"] == 0 and again["unchanged"] == 1


def test_storage_class_dry_run_and_bad_input(buckets, loopback):
    s3 = buckets
    put(s3, "a.txt", b"a")
    dry = run(dry_run=True)
    assert dry["copied"] == 1 and "Contents" not in s3.list_objects_v2(Bucket=BAK)
    run(storage_class="GLACIER_IR")
    assert s3.head_object(Bucket=BAK, Key="a.txt")["StorageClass"] == "GLACIER_IR"
    with pytest.raises(Exception, match="'no-such-bucket' does not exist"):
        backup_bucket(SRC, "no-such-bucket")
    before = s3.list_objects_v2(Bucket=BAK)["KeyCount"]
    with pytest.raises(Exception, match="'no-such-source' does not exist"):
        backup_bucket("no-such-source", BAK)
    assert s3.list_objects_v2(Bucket=BAK)["KeyCount"] == before  # nothing written or tagged
    with pytest.raises(Exception, match="different buckets"):
        backup_bucket(SRC, SRC)


def archive_in_place(s3, key: str, storage_class: str) -> None:
    """What a lifecycle rule does to a backup copy: same bytes, metadata and tags, colder."""
    s3.copy_object(
        Bucket=BAK,
        Key=key,
        CopySource={"Bucket": BAK, "Key": key},
        StorageClass=storage_class,
        MetadataDirective="COPY",
    )


def test_restore_skips_deleted_restores_archived_and_copies(buckets, loopback):
    s3 = buckets
    put(s3, "hot.txt", b"hot", Tagging="keep=1")
    for key in ("ir.txt", "cold ünï.txt", "deep+.txt", "gone deep.txt", "deleted later.txt"):
        put(s3, key, b"body of " + key.encode())
    run()
    s3.delete_object(Bucket=SRC, Key="deleted later.txt")
    s3.delete_object(Bucket=SRC, Key="gone deep.txt")
    run()  # tags both
    archive_in_place(s3, "ir.txt", "GLACIER_IR")
    archive_in_place(s3, "cold ünï.txt", "GLACIER")
    archive_in_place(s3, "deep+.txt", "DEEP_ARCHIVE")
    archive_in_place(s3, "gone deep.txt", "DEEP_ARCHIVE")
    assert tags(s3, BAK, "gone deep.txt")["Deleted"] == "True"  # readable while archived
    loopback.tiers.durations["Standard"] = 1.0
    loopback.tiers.requests.clear()
    result = restore_bucket(BAK, NEW, create_target=True, work_dir="/tmp/coldflow-test", **FAST)
    assert result["skipped_deleted"] == 2 and result["restored"] == 2 and result["failed"] == 0
    got = {o["Key"] for o in s3.list_objects_v2(Bucket=NEW)["Contents"]}
    assert got == {"hot.txt", "ir.txt", "cold ünï.txt", "deep+.txt"}
    assert s3.get_object(Bucket=NEW, Key="deep+.txt")["Body"].read() == b"body of deep+.txt"
    assert tags(s3, NEW, "hot.txt") == {"keep": "1"}
    # GLACIER_IR needs no restore: only the two archived live objects were requested
    assert {r[1] for r in loopback.tiers.requests} == {"cold ünï.txt", "deep+.txt"}


def test_copy_from_an_archived_object_waits_for_its_restore(buckets, loopback):
    s3 = buckets
    s3.put_object(Bucket=BAK, Key="c.txt", Body=b"c", StorageClass="GLACIER")
    loopback.tiers.durations["Standard"] = 60
    s3.restore_object(Bucket=BAK, Key="c.txt", RestoreRequest={"Days": 1})
    with pytest.raises(s3.exceptions.ClientError, match="InvalidObjectState"):
        s3.copy_object(Bucket=SRC, Key="c.txt", CopySource={"Bucket": BAK, "Key": "c.txt"})
    assert tags(s3, BAK, "c.txt") == {}  # tags of an archived object can be read


def test_compare_buckets(buckets, tmp_path):
    s3 = buckets
    put(s3, "same.txt", b"s")
    put(s3, "diff.txt", b"d")
    run()
    put(s3, "diff.txt", b"D")
    put(s3, "missing.txt", b"m")
    s3.put_object(Bucket=BAK, Key="extra.txt", Body=b"e")
    result = compare_buckets(SRC, BAK, report=str(tmp_path / "diff.csv"))
    assert {k: result[k] for k in ("missing", "differing", "extra", "same")} == {
        "missing": 1,
        "differing": 1,
        "extra": 1,
        "same": 1,
    }
    frame = pd.read_csv(result["report"])
    assert dict(zip(frame["key"], frame["status"], strict=True)) == {
        "diff.txt": "differing",
        "extra.txt": "extra",
        "missing.txt": "missing",
    }
    on_s3 = compare_buckets(SRC, BAK, report=f"s3://{BAK}/reports/diff.csv")
    assert on_s3["report"] == f"s3://{BAK}/reports/diff.csv"


def test_fifty_thousand_objects_with_few_task_runs(buckets, loopback):
    n, new = 50_000, 2_000
    loopback.bulk_put(SRC, (f"many/{i:06d}" for i in range(n)))
    # an earlier night backed up all but the last 2,000 (same bytes, so the same ETags)
    loopback.bulk_put(BAK, (f"many/{i:06d}" for i in range(n - new)))

    @flow
    def nightly():
        from prefect.runtime import flow_run

        return backup_bucket(SRC, BAK, work_dir="/tmp/coldflow-test"), flow_run.id

    result, run_id = nightly()
    assert (result["listed"], result["copied"], result["unchanged"]) == (n, new, n - new)
    assert result["failed"] == 0

    assert task_runs_of(run_id) <= 8  # two batches of 1,000 keys, not 2,000 task runs


KMS_DEFAULT = {"Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]}


def test_sse_kms_buckets_and_a_versioned_source(buckets, loopback, tmp_path):
    """Under SSE-KMS no ETag is an MD5 and a copy's ETag is not its source's; a delete on a
    versioned source is a delete marker. Same-size changes are still copied, deletions
    tagged, unchanged objects left alone, and the buckets compare clean."""
    s3 = buckets
    for b in (SRC, BAK):
        s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration=KMS_DEFAULT)
    s3.put_bucket_versioning(Bucket=SRC, VersioningConfiguration={"Status": "Enabled"})
    for k in KEYS:
        put(s3, k, b"v1 " + k.encode())
    loopback.clear_faults()
    first = run()
    assert first["copied"] == len(KEYS)
    # the backup bucket's facts say KMS: one CopyObject per object, recording its source's
    # ETag and checked against the source's checksum (no copy first tried for a same ETag)
    assert loopback.request_counts["PutObject"] == len(KEYS)
    assert run()["unchanged"] == len(KEYS)  # nothing copied again
    put(s3, KEYS[0], b"v2 " + KEYS[0].encode())  # same size
    s3.delete_object(Bucket=SRC, Key=KEYS[1])  # a delete marker
    third = run()
    assert (third["copied"], third["tagged_deleted"]) == (1, 1), third
    assert s3.get_object(Bucket=BAK, Key=KEYS[0])["Body"].read() == b"v2 " + KEYS[0].encode()
    assert tags(s3, BAK, KEYS[1])["Deleted"] == "True"
    s3.put_object(Bucket=SRC, Key=KEYS[1], Body=b"v1 " + KEYS[1].encode())  # back again
    back = run()  # under KMS its ETag is new: it can't be told from a change, so it is copied
    assert (back["copied"], back["tagged_deleted"]) == (1, 0), back
    assert "Deleted" not in tags(s3, BAK, KEYS[1])
    result = compare_buckets(SRC, BAK, report=str(tmp_path / "diff.csv"))
    assert (result["missing"], result["differing"], result["same"]) == (0, 0, len(KEYS)), result
    put(s3, KEYS[2], b"v3 " + KEYS[2].encode())  # same size, not yet backed up
    result = compare_buckets(SRC, BAK, report=str(tmp_path / "diff.csv"))
    assert (result["differing"], result["same"]) == (1, len(KEYS) - 1), result


def test_restore_bucket_between_sse_kms_buckets(buckets, loopback):
    """restore_bucket from an SSE-KMS backup into an SSE-KMS bucket: current, non-deleted
    copies come back byte-identical (an archived one through its restore), encrypted by the
    target's default, the deleted one left out."""
    s3 = buckets
    s3.create_bucket(Bucket=NEW)
    for b in (SRC, BAK, NEW):
        s3.put_bucket_encryption(Bucket=b, ServerSideEncryptionConfiguration=KMS_DEFAULT)
    s3.put_bucket_versioning(Bucket=SRC, VersioningConfiguration={"Status": "Enabled"})
    for k in KEYS:
        put(s3, k, b"v1 " + k.encode())
    run()
    put(s3, KEYS[0], b"v2 " + KEYS[0].encode())  # a newer current version
    s3.delete_object(Bucket=SRC, Key=KEYS[1])  # a delete marker: tagged in the backup
    run()
    archive_in_place(s3, KEYS[2], "DEEP_ARCHIVE")
    result = restore_bucket(BAK, NEW, work_dir="/tmp/coldflow-test", **FAST)
    assert (result["skipped_deleted"], result["restored"], result["failed"]) == (1, 1, 0), result
    got = {o["Key"] for o in s3.list_objects_v2(Bucket=NEW)["Contents"]}
    assert got == set(KEYS) - {KEYS[1]}
    for k in got:
        found = s3.get_object(Bucket=NEW, Key=k)
        assert found["Body"].read() == s3.get_object(Bucket=SRC, Key=k)["Body"].read(), k
        assert found["ServerSideEncryption"] == "aws:kms"


def test_a_copy_whose_checksum_differs_from_the_sources_fails(buckets, loopback):
    """A copy's bytes never pass the client: S3's checksum of the copy, compared with the
    source's, is what says the copy is the source. A copy S3 reports with another checksum
    fails its object (the others are backed up) and the run fails."""
    import re

    s3 = buckets
    s3.put_bucket_encryption(Bucket=BAK, ServerSideEncryptionConfiguration=KMS_DEFAULT)
    put(s3, "good.txt", b"good")
    put(s3, "bad.txt", b"bad!")

    def corrupt(request, environ, start_response):
        if request.bucket != BAK or request.key != "bad.txt":
            return None
        if not request.headers.get("x-amz-copy-source"):
            return None
        seen: dict = {}

        def capture(status, headers, exc_info=None):
            seen["status"], seen["headers"] = status, headers

        body = b"".join(loopback.injector.serve(request, environ, capture))
        body = re.sub(rb"<ChecksumCRC32>[^<]*<", b"<ChecksumCRC32>AAAAAA==<", body)
        start_response(
            seen["status"],
            [
                (k, str(len(body)) if k.lower() == "content-length" else v)
                for k, v in seen["headers"]
            ],
        )
        return [body]

    loopback.injector.responders.append(corrupt)
    with pytest.raises(BackupFailedError, match="1 objects not backed up") as failed:
        run()
    assert "CRC32 of the copy is AAAAAA==" in str(failed.value)
    assert s3.get_object(Bucket=BAK, Key="good.txt")["Body"].read() == b"good"
