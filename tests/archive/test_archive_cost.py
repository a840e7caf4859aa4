"""What an archive costs, stated before anything is written; progress while it runs."""

from __future__ import annotations

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED

from flows.archive import archive_plates
from tasks.archive.cost import estimate_archive
from tasks.restore.pricing import GB


def test_figures_for_a_300_gb_plate_into_deep_archive():
    est = estimate_archive({"STANDARD": 300 * GB}, "DEEP_ARCHIVE", 2, 8 * 2**20)
    assert est.hot_monthly == pytest.approx(300 * 0.023)
    assert est.archive_monthly == pytest.approx(300 * 0.00099)
    assert est.minimum_duration == pytest.approx(est.archive_monthly * 6)  # 180 days
    assert est.restore_bulk < est.restore_standard
    assert 0 < est.upload_requests < 5  # ~36,000 parts at $0.05 per 1,000


def test_hot_copies_in_cheaper_classes_cost_less():
    standard = estimate_archive({"STANDARD": 100 * GB}, "GLACIER", 1, 8 * 2**20)
    infrequent = estimate_archive({"STANDARD_IA": 100 * GB}, "GLACIER", 1, 8 * 2**20)
    assert infrequent.hot_monthly < standard.hot_monthly
    assert standard.minimum_duration == pytest.approx(standard.archive_monthly * 3)  # 90 days


def test_dry_run_rows_carry_the_figures_and_a_run_shows_progress(
    s3, seed, plates_csv, tmp_path, progress_shown
):
    seed(SPACED)
    csv = plates_csv(SPACED)
    (row,) = archive_plates(
        csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path), dry_run=True
    )
    assert row["status"] == "dry-run"
    assert row["estimate"]["hot $/month"] > row["estimate"]["archive $/month"] > 0
    assert "restore Bulk $" in row["estimate"] and "minimum duration $" in row["estimate"]
    assert "Contents" not in s3.list_objects_v2(Bucket=COLD)

    shown = progress_shown
    (done,) = archive_plates(csv, PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path))
    assert done["status"] == "archived"
    assert shown[0] == 0.0 and shown[-1] == 100.0 and shown == sorted(shown)
