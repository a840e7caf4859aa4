"""Every flow's parameters: out-of-range days, unknown tiers and storage classes, ledgers that
are not ours. Each is refused with a message naming it, before any S3 request."""

from __future__ import annotations

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT
from prefect.exceptions import ParameterTypeError

from flows.archive import archive_plates
from flows.backup import backup_bucket
from flows.batch_restore import bulk_restore
from flows.bucket_restore import restore_bucket
from flows.restore import restore_plates, restore_prefix
from flows.vault import thaw_vault_archives
from tasks.core.errors import InputError

CSV = "plates.csv"  # never read: the parameters are refused first
FLOWS = {
    "restore_prefix": lambda **kw: restore_prefix(COLD, "p/", **kw),
    "restore_plates": lambda **kw: restore_plates(CSV, PROJECT, BATCH, LIVE, COLD, **kw),
    "bulk_restore": lambda **kw: bulk_restore(COLD, "p/", **kw),
    "restore_bucket": lambda **kw: restore_bucket(COLD, LIVE, **kw),
    "thaw_vault_archives": lambda **kw: thaw_vault_archives("vault", COLD, **kw),
    "archive_plates": lambda **kw: archive_plates(CSV, PROJECT, BATCH, LIVE, COLD, **kw),
    "backup_bucket": lambda **kw: backup_bucket(LIVE, COLD, **kw),
}
WITH_DAYS = ["restore_prefix", "restore_plates", "bulk_restore", "restore_bucket"]
WITH_TIER = [*WITH_DAYS, "thaw_vault_archives"]
WITH_CLASS = ["archive_plates", "backup_bucket", "thaw_vault_archives"]


def refused(loopback, name: str, **params) -> str:
    with pytest.raises(ParameterTypeError) as caught:
        FLOWS[name](**params)
    assert loopback.request_counts == {}, name  # nothing reached S3
    return str(caught.value)


@pytest.mark.parametrize("days", [0, -1, 100_000])
@pytest.mark.parametrize("name", WITH_DAYS)
def test_days_out_of_range(s3, loopback, name, days):
    loopback.clear_faults()
    message = refused(loopback, name, days=days)
    assert "days" in message


@pytest.mark.parametrize("name", WITH_TIER)
def test_unknown_tier(s3, loopback, name):
    loopback.clear_faults()
    message = refused(loopback, name, tier="Fast")
    assert "tier" in message and "Standard" in message


@pytest.mark.parametrize("name", WITH_CLASS)
def test_unknown_storage_class(s3, loopback, name):
    loopback.clear_faults()
    message = refused(loopback, name, storage_class="COLD")
    assert "storage_class" in message and "DEEP_ARCHIVE" in message


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("plate_id,plate_id_full\nBR1,BR1__x\n", "its columns are plate_id,plate_id_full"),
        (
            "key,storage_class,size,status,message\nk,GLACIER,3,deleted-by-hand,\n",
            "statuses coldflow never writes: deleted-by-hand",
        ),
        (
            "key,storage_class,size,status,message\nk,GLACIER,three,error,x\n",
            "sizes are not numbers",
        ),
        ("", "is not a CSV coldflow can read"),
        (None, "does not exist"),
    ],
    ids=["another-csv", "unknown-status", "bad-size", "empty", "missing"],
)
def test_a_ledger_that_is_not_ours_is_refused(s3, loopback, tmp_path, text, reason):
    ledger = tmp_path / "ledger.csv"
    if text is not None:
        ledger.write_text(text)
    loopback.clear_faults()
    with pytest.raises(InputError) as caught:
        restore_prefix(COLD, "p/", retry_ledger=str(ledger), work_dir=str(tmp_path / "w"))
    assert reason in str(caught.value) and str(ledger) in str(caught.value)
    assert loopback.request_counts == {}
