"""docs/iam.md's least-privilege policies held to what each flow really calls.

Each flow runs against the loopback endpoint, which records the IAM action every request
needs (loopback/iam.py); the actions of the policy docs/iam.md states for that flow must be
exactly those: one missing fails (the flow would be refused on a real account), one never
used fails too (it grants more than the flow needs). A policy with a condition (a versioned
bucket, Object Lock) states only what that case adds, and its case runs too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import boto3
import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED

from flows.archive import archive_plates
from flows.backup import backup_bucket, compare_buckets, restore_bucket
from flows.batch_restore import bulk_restore
from flows.restore import restore_plates, restore_prefix
from flows.sweep import check_restored, restore_progress_sweep
from flows.vault import thaw_vault_archives
from loopback.control import bulk_put

PAGE = Path(__file__).resolve().parents[2] / "docs" / "iam.md"
FAST = {"poll_interval": 0.1, "max_poll_interval": 0.5}
BLOCK = re.compile(r"<!-- policy: (?P<name>[^>]+?) -->\s*```json\n(?P<body>.*?)```", re.S)


def documented() -> dict[str, set[str]]:
    """The actions of each policy on the page, by its name (``flow`` or ``flow, case``)."""
    found: dict[str, set[str]] = {}
    for m in BLOCK.finditer(PAGE.read_text(encoding="utf-8")):
        statements = json.loads(m["body"])["Statement"]
        actions = set()
        for statement in statements:
            named = statement["Action"]
            actions.update([named] if isinstance(named, str) else named)
        found[m["name"].strip()] = actions
    return found


def archive(s3, loopback, seed, plates_csv, tmp_path, **kwargs) -> str:
    seed(SPACED)
    csv = plates_csv(SPACED)
    loopback.clear_faults()  # the actions counted from here
    archive_plates(csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "a"), **kwargs)
    return csv


def s_archive(s3, loopback, seed, plates_csv, tmp_path) -> None:
    archive(s3, loopback, seed, plates_csv, tmp_path, delete_source=True)


def s_archive_versioned(s3, loopback, seed, plates_csv, tmp_path) -> None:
    s3.put_bucket_versioning(Bucket=LIVE, VersioningConfiguration={"Status": "Enabled"})
    loopback.clear_faults()
    archive(s3, loopback, seed, plates_csv, tmp_path, delete_source=True, versioned_delete="purge")


def s_restore_plates(s3, loopback, seed, plates_csv, tmp_path) -> None:
    csv = archive(s3, loopback, seed, plates_csv, tmp_path, delete_source=True)
    loopback.tiers.durations["Standard"] = 0.5
    loopback.clear_faults()
    restore_plates(csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "r"), **FAST)


def glacier(s3, n: int = 3, prefix: str = "p/") -> None:
    for i in range(n):
        s3.put_object(Bucket=COLD, Key=f"{prefix}{i}", Body=b"x", StorageClass="GLACIER")


def s_restore_prefix(s3, loopback, seed, plates_csv, tmp_path) -> None:
    glacier(s3)
    bulk_put(COLD, (f"p/hot/{i:04d}" for i in range(3000)))  # HEADs cost the sensor less
    loopback.tiers.durations["Standard"] = 0.3
    loopback.clear_faults()
    restore_prefix(COLD, "p/", work_dir=str(tmp_path / "w"), **FAST)


def s_bulk_restore(s3, loopback, seed, plates_csv, tmp_path) -> None:
    glacier(s3)
    loopback.clear_faults()
    bulk_restore(COLD, prefix="p/", work_dir=str(tmp_path / "w"), **FAST)


def s_check_restored(s3, loopback, seed, plates_csv, tmp_path) -> None:
    glacier(s3)
    loopback.clear_faults()
    check_restored(COLD, "p/")


def s_sweep(s3, loopback, seed, plates_csv, tmp_path) -> None:
    glacier(s3)
    restore_prefix(
        COLD, "p/", wait=False, work_dir=str(tmp_path / "w"), ledger_s3_uri=f"s3://{COLD}/l/a.csv"
    )
    loopback.clear_faults()
    restore_progress_sweep(f"s3://{COLD}/l/")


def s_thaw(s3, loopback, seed, plates_csv, tmp_path) -> None:
    g = boto3.client("glacier")
    g.create_vault(vaultName="iam-vault")
    archive_id = g.upload_archive(vaultName="iam-vault", body=b"an archive")["archiveId"]
    loopback.clear_faults()
    thaw_vault_archives(
        "iam-vault", COLD, archives={archive_id: "a.tar"}, delete_archive=True, timeout=60, **FAST
    )


SRC, BAK, NEW = "iam-src", "iam-bak", "iam-new"


def backed_up(s3, tmp_path, **kwargs) -> None:
    for b in (SRC, BAK):
        s3.create_bucket(Bucket=b)
    for i in range(3):
        s3.put_object(Bucket=SRC, Key=f"k{i}", Body=b"x" * i)
    backup_bucket(SRC, BAK, work_dir=str(tmp_path / "b"), **kwargs)
    s3.delete_object(Bucket=SRC, Key="k0")


def s_backup(s3, loopback, seed, plates_csv, tmp_path) -> None:
    backed_up(s3, tmp_path)
    s3.put_object(Bucket=SRC, Key="new", Body=b"new")
    loopback.clear_faults()
    backup_bucket(SRC, BAK, work_dir=str(tmp_path / "b"))  # a copy and a deletion tag


def s_restore_bucket(s3, loopback, seed, plates_csv, tmp_path) -> None:
    backed_up(s3, tmp_path, storage_class="GLACIER")
    backup_bucket(SRC, BAK, work_dir=str(tmp_path / "b"), storage_class="GLACIER")
    loopback.tiers.durations["Standard"] = 0.3
    loopback.clear_faults()
    restore_bucket(BAK, NEW, create_target=True, work_dir=str(tmp_path / "r"), timeout=60, **FAST)


def s_compare(s3, loopback, seed, plates_csv, tmp_path) -> None:
    backed_up(s3, tmp_path)
    s3.put_object(Bucket=BAK, Key="k2", Body=b"yy")  # same size, another ETag: looked at
    loopback.clear_faults()
    compare_buckets(SRC, BAK)


SCENARIOS: dict[str, Callable] = {
    "archive_plates": s_archive,
    "archive_plates, versioned live bucket": s_archive_versioned,
    "restore_plates": s_restore_plates,
    "restore_prefix": s_restore_prefix,
    "bulk_restore": s_bulk_restore,
    "check_restored": s_check_restored,
    "restore_progress_sweep": s_sweep,
    "thaw_vault_archives": s_thaw,
    "backup_bucket": s_backup,
    "restore_bucket": s_restore_bucket,
    "compare_buckets": s_compare,
}


def test_every_flow_has_a_policy_and_every_policy_a_case():
    assert set(documented()) == set(SCENARIOS)


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_a_flows_policy_grants_exactly_what_it_calls(
    name, s3, loopback, seed, plates_csv, tmp_path
):
    SCENARIOS[name](s3, loopback, seed, plates_csv, tmp_path)
    called = set(loopback.actions)
    policies = documented()
    flow, _, case = name.partition(", ")

    stated, used = policies.get(name, set()), called
    if case:  # what the case adds to the flow's policy, each of it used in the case
        assert not stated & policies[flow], f"{name}: repeats {sorted(stated & policies[flow])}"
        used = called - policies[flow]
    assert not used - stated, f"{name}: the policy lacks {sorted(used - stated)}"
    assert not stated - called, f"{name}: the policy grants unused {sorted(stated - called)}"
