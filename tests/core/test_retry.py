"""One retry policy with a known worst case (docs/decisions.md, tasks/core/retry.py)."""

from __future__ import annotations

import pytest
from botocore.retries.standard import ExponentialBackoff
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED

from flows.archive import archive_plates
from tasks.core.clients import s3_client
from tasks.core.errors import PlatesFailedError, TransientError
from tasks.core.retry import CALL_ATTEMPTS, TASK_RETRIES, is_transient
from tasks.core.s3 import get_text
from tasks.formats.layout import CELLPAINTING


@pytest.fixture
def no_backoff(monkeypatch):
    """botocore's own backoff sleeps seconds between attempts; the count is what matters."""
    monkeypatch.setattr(ExponentialBackoff, "delay_amount", lambda self, context: 0)


def test_one_call_is_sent_a_bounded_number_of_times(s3, loopback, no_backoff):
    s3.put_object(Bucket=LIVE, Key="x.md5", Body=b"abc")
    loopback.inject_error("GET", r"x\.md5$", status=503, code="SlowDown")
    with pytest.raises(TransientError, match="still failing after retries") as err:
        get_text(s3_client(), LIVE, "x.md5")
    assert is_transient(err.value)
    assert loopback.request_counts["GetObject"] == CALL_ATTEMPTS


def test_a_permanently_failing_endpoint_fails_the_plate_after_a_stated_number(
    s3, seed, plates_csv, tmp_path, loopback, no_backoff
):
    seed(SPACED)
    loopback.inject_error("GET", "", operation="ListObjects", status=503, code="SlowDown")
    with pytest.raises(PlatesFailedError) as failed:
        archive_plates(
            plates_csv(SPACED), PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp_path / "s")
        )
    assert failed.value.summary[0]["status"] == "failed"
    # the listing task runs 1 + TASK_RETRIES times; each time the plate's four prefixes are
    # listed at once, each call CALL_ATTEMPTS times: 60
    prefixes = sum(len(bundle.prefixes) for bundle in CELLPAINTING.bundles)
    assert prefixes == 4
    assert loopback.request_counts["ListObjects"] == (TASK_RETRIES + 1) * CALL_ATTEMPTS * prefixes
