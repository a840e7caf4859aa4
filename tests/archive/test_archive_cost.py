"""What an archive costs, stated before anything is written; progress while it runs."""

from __future__ import annotations

import threading
import time

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


@pytest.mark.parametrize("streaming", [False, True], ids=["staged", "streaming"])
def test_progress_moves_within_each_bundle(
    s3, seed, plates_csv, tmp_path, progress_shown, monkeypatch, streaming
):
    """Every object staged and tarred, every part uploaded (staged) or every object streamed
    moves the artifact, not only each finished bundle."""
    from tasks.archive import progress

    monkeypatch.setattr(progress, "PUSH_SECONDS", 0.0)
    originals = seed(SPACED)
    (done,) = archive_plates(
        plates_csv(SPACED),
        PROJECT,
        BATCH,
        LIVE,
        COLD,
        scratch_dir=str(tmp_path),
        streaming=streaming,
    )
    assert done["status"] == "archived"
    shown = progress_shown
    assert shown == sorted(shown) and shown[-1] == 100.0
    steps = {round(v, 2) for v in shown if 0 < v < 100}
    # per bundle alone, two bundles would give one step at most
    assert len(steps) >= len(originals) // 2


def test_bundle_progress_adds_up_to_the_bundle():
    from tasks.archive.progress import BundleProgress, RunProgress

    run = RunProgress("test-run", total=3_000)
    try:
        moving = BundleProgress("test-run", "plate", 3_000)
        download, tar, upload = (moving.stage(1 / 3, of) for of in (3_000, 3_000, 1_234))
        for _ in range(300):
            download(10)
            tar(10)
        for _ in range(1_234):
            upload(1)
        assert 2_990 <= run.done["plate"] <= 3_000
        moving.finish()
        assert run.done["plate"] == 3_000
    finally:
        run.close()


def test_a_plates_prefixes_are_listed_at_once(s3, seed, plates_csv, tmp_path, loopback):
    """The four prefixes of a plate wait on S3 together, not one round trip after another,
    and the figures are those of every prefix."""
    originals = seed(SPACED)
    now = {"listing": 0, "most": 0}
    lock = threading.Lock()

    def slow_page() -> None:
        with lock:
            now["listing"] += 1
            now["most"] = max(now["most"], now["listing"])
        time.sleep(0.3)  # a round trip long enough for the other prefixes' pages to arrive
        with lock:
            now["listing"] -= 1

    loopback.on_request("ListObjects", "", slow_page, times=4)
    (row,) = archive_plates(
        plates_csv(SPACED), PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path), dry_run=True
    )
    assert now["most"] >= 3
    assert row["objects"] == len(originals)
