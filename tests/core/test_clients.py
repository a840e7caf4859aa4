"""One client factory: every service and every s3:// file read with the same credentials."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pandas as pd
import pytest
from botocore.exceptions import ClientError
from botocore.utils import parse_timestamp as botocore_timestamp
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED
from prefect_aws import AwsCredentials

from flows.archive import archive_plates
from flows.restore import restore_prefix
from tasks.core.clients import client, parse_timestamp, reset_clients, storage_options
from tasks.core.errors import ObjectArchivedError, PlatesFileError
from tasks.core.s3 import get_text
from tasks.formats.plates_csv import read_plates

BLOCK_KEY = "AKIABLOCKONLY0000001"


@pytest.fixture
def block(loopback) -> str:
    """A credentials block whose key differs from the environment's (``testing``)."""
    name = "coldflow-test-block"
    AwsCredentials(
        aws_access_key_id=BLOCK_KEY,
        aws_secret_access_key="block-secret",
        region_name="us-east-1",
        aws_client_parameters={"endpoint_url": loopback.endpoint_url},
    ).save(name, overwrite=True)
    reset_clients()
    return name


def test_every_service_client_uses_the_block(block, loopback):
    for service in ("s3", "glacier", "s3control", "sts"):
        made = client(service, block)
        assert made._request_signer._credentials.access_key == BLOCK_KEY, service
        assert made.meta.endpoint_url == loopback.endpoint_url, service
    assert client("s3", None)._request_signer._credentials.access_key == "testing"
    options = storage_options(block)
    assert options["key"] == BLOCK_KEY and options["secret"] == "block-secret"
    assert options["client_kwargs"]["endpoint_url"] == loopback.endpoint_url


def test_plates_csv_and_ledgers_on_s3_are_read_with_the_block(s3, block, loopback):
    s3.put_object(Bucket=LIVE, Key="in/plates.csv", Body=b"plate_id,plate_id_full\nA,A_full\n")
    loopback.clear_faults()  # and the per-key counts
    assert [p.plate_id for p in read_plates(f"s3://{LIVE}/in/plates.csv", block)] == ["A"]
    assert set(loopback.access_keys) == {BLOCK_KEY}


def test_a_run_reads_its_input_and_writes_with_the_block_only(s3, seed, block, loopback, tmp_path):
    seed(SPACED)
    s3.put_object(
        Bucket=LIVE,
        Key="in/plates.csv",
        Body=f"plate_id,plate_id_full\n{SPACED[0]},{SPACED[1]}\n".encode(),
    )
    loopback.clear_faults()
    rows = archive_plates(
        f"s3://{LIVE}/in/plates.csv",
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(tmp_path / "s"),
        aws_credentials_block=block,
    )
    assert rows[0]["status"] == "archived"
    assert set(loopback.access_keys) == {BLOCK_KEY}, loopback.access_keys

    loopback.clear_faults()
    result = restore_prefix(
        COLD,
        "imaging_analysis/",
        wait=False,
        ledger_s3_uri=f"s3://{COLD}/ledgers/one.csv",
        work_dir=str(tmp_path / "w"),
        aws_credentials_block=block,
    )
    assert result["requested"] == 2  # the two tarballs
    restore_prefix(
        COLD,
        "imaging_analysis/",
        wait=False,
        retry_ledger=f"s3://{COLD}/ledgers/one.csv",
        work_dir=str(tmp_path / "w2"),
        aws_credentials_block=block,
    )
    assert set(loopback.access_keys) == {BLOCK_KEY}, loopback.access_keys
    ledger = pd.read_csv(f"s3://{COLD}/ledgers/one.csv", storage_options=storage_options(block))
    assert len(ledger) > 2


def test_reading_an_archived_object_says_restore_it_first(s3, loopback):
    s3.put_object(Bucket=COLD, Key="cold.md5", Body=b"x", StorageClass="DEEP_ARCHIVE")
    with pytest.raises(
        ObjectArchivedError, match=r"s3://cold-bucket/cold\.md5 is archived.*restore"
    ):
        get_text(client("s3"), COLD, "cold.md5")
    s3.put_object(
        Bucket=COLD, Key="plates.csv", Body=b"plate_id,plate_id_full\n", StorageClass="GLACIER"
    )
    with pytest.raises(PlatesFileError, match=r"plates\.csv is archived.*restore it first"):
        read_plates(f"s3://{COLD}/plates.csv")


@pytest.mark.parametrize(
    "value",
    [
        "2026-11-22T13:52:14.000Z",  # a listing's LastModified
        "2026-11-22T13:52:14Z",
        "2026-11-22T14:52:14.250+01:00",
        "Sun, 22 Nov 2026 13:52:14 GMT",  # a HEAD's Last-Modified header
        "2026-11-22T13:52:14",  # no zone: left to botocore
        1795355534,  # epoch seconds (JSON protocols)
        "1795355534.5",
    ],
)
def test_timestamps_read_as_botocore_reads_them(value):
    ours, theirs = parse_timestamp(value), botocore_timestamp(value)
    assert ours == theirs
    assert ours.utcoffset() == theirs.utcoffset()


def test_a_listing_and_a_head_agree_on_when_an_object_changed(s3):
    s3.put_object(Bucket=COLD, Key="when.txt", Body=b"x")
    ours = client("s3")
    listed = ours.list_objects_v2(Bucket=COLD, Prefix="when.txt")["Contents"][0]["LastModified"]
    headed = ours.head_object(Bucket=COLD, Key="when.txt")["LastModified"]
    assert listed == headed
    assert abs(listed - datetime.now(UTC)).total_seconds() < 300


@pytest.mark.parametrize("retries", [True, False])
def test_requests_name_coldflow_in_their_user_agent(loopback, retries):
    made = client("s3", None, retries)
    sent: list[str] = []

    def record(request, **_):
        agent = request.headers["User-Agent"]
        sent.append(agent.decode() if isinstance(agent, bytes) else agent)

    made.meta.events.register("before-send.s3", record)
    try:
        made.list_buckets()
    finally:
        made.meta.events.unregister("before-send.s3", record)
    assert len(sent) == 1
    assert sent[0].startswith("coldflow/") and "Botocore/" in sent[0]


def test_listing_pages_are_parsed_one_at_a_time(s3):
    """Eight threads listing at once parse their pages in turn (a page half-parsed per thread
    is what made a parallel listing's memory grow with its threads), and list all keys."""
    from tasks.core.listing import list_objects

    s3.put_object(Bucket=LIVE, Key="other", Body=b"")
    for i in range(60):
        s3.put_object(Bucket=LIVE, Key=f"pages/{i:03d}", Body=b"x")
    reset_clients()
    made = client("s3")
    now = {"parsing": 0, "most": 0}

    def parsing(**_) -> None:  # runs after the gate's own handler: inside the gate
        now["parsing"] += 1
        now["most"] = max(now["most"], now["parsing"])
        time.sleep(0.01)  # long enough for another thread's page to arrive meanwhile

    def parsed(**_) -> None:  # runs before the gate is left
        now["parsing"] -= 1

    made.meta.events.register("before-parse.s3.ListObjectsV2", parsing)
    made.meta.events.register_first("response-received.s3.ListObjectsV2", parsed)
    keys = [o["Key"] for o in list_objects(made, LIVE, "pages/", workers=8, page_size=2)]
    assert keys == [f"pages/{i:03d}" for i in range(60)]
    assert now["most"] == 1 and now["parsing"] == 0
    with pytest.raises(ClientError):  # an error answer is parsed too, and leaves the gate
        made.list_objects_v2(Bucket="no-such-bucket-here")
    assert made.list_objects_v2(Bucket=LIVE, Prefix="pages/", MaxKeys=1)["KeyCount"] == 1
