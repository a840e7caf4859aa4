"""The parallel listing by key range lists exactly what a serial listing does, in the same
order, whatever the keys: any UTF-8, spaces, ``+``, ``%``, placeholders ending in ``/``, keys
that differ only after a long common prefix. Small pages (``page_size``) make a few hundred
keys into many ranges, so every way of cutting is exercised on the loopback endpoint."""

from __future__ import annotations

import bisect
import hashlib
import os
import random
import re
import tempfile
import threading
import time

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tasks.core.keyspace import Density
from tasks.core.listing import KeySpace, list_objects
from tasks.core.s3 import iter_objects

BUCKET = "listing-bucket"
#: Characters S3 keys may hold and XML listings carry (no surrogates, no controls).
CHARS = st.characters(blacklist_categories=("Cs", "Cc"))
PIECES = st.sampled_from(["", "a", "plate 01/", "images/", "+", "%2F", "ü", "日本", "/", "~"])


def serial(s3, prefix: str) -> list[tuple[str, int, str]]:
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    return [(o["Key"], o["Size"], o["ETag"]) for p in pages for o in p.get("Contents", [])]


def parallel(s3, prefix: str, **kw) -> list[tuple[str, int, str]]:
    return [(o["Key"], o["Size"], o["ETag"]) for o in list_objects(s3, BUCKET, prefix, **kw)]


@pytest.fixture
def bucket(s3):
    s3.create_bucket(Bucket=BUCKET)
    return s3


keys_strategy = st.lists(
    st.builds(
        lambda parts, tail: "".join(parts) + tail,
        st.lists(PIECES, max_size=4),
        st.text(CHARS, min_size=1, max_size=12),
    ),
    min_size=1,
    max_size=300,
    unique=True,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=keys_strategy,
    shared=st.sampled_from(["", "x" * 200 + "/", "plates/"]),
    page=st.integers(2, 40),
    workers=st.integers(2, 8),
    range_pages=st.integers(1, 4),
)
def test_parallel_listing_equals_the_serial_one(
    bucket, loopback, keys, shared, page, workers, range_pages
):
    s3 = bucket
    loopback.reset()
    s3.create_bucket(Bucket=BUCKET)
    keys = [shared + k for k in keys if len((shared + k).encode()) <= 1024]
    loopback.bulk_put(BUCKET, keys)
    expected = serial(s3, shared)
    assert sorted(k for k, _, _ in expected) == sorted(keys, key=lambda k: k.encode())
    got = parallel(s3, shared, page_size=page, workers=workers, range_pages=range_pages)
    assert got == expected


def test_ten_keys_cost_one_request_and_many_keys_list_in_ranges(bucket, loopback):
    loopback.bulk_put(BUCKET, [f"few/{i}" for i in range(10)])
    loopback.clear_faults()
    assert [o["Key"] for o in list_objects(bucket, BUCKET, "few/")] == [
        f"few/{i}" for i in range(10)
    ]
    assert loopback.request_counts == {"ListObjects": 1}
    keys = [f"many/{i:06d}" for i in range(5000)]
    loopback.bulk_put(BUCKET, keys)
    loopback.clear_faults()
    got = [o["Key"] for o in list_objects(bucket, BUCKET, "many/", page_size=50, workers=8)]
    assert got == keys
    pages = 5000 // 50
    # ranges listed at once: requests start after keys other than the previous page's last
    assert pages <= loopback.request_counts["ListObjects"] <= pages * 1.2


def test_pages_of_one_key_list_serially_without_a_density(bucket, loopback):
    """A page of one key tells nothing of the keys' density: no cut is placed on it."""
    keys = [f"one/{i:03d}" for i in range(12)]
    loopback.bulk_put(BUCKET, keys)
    loopback.clear_faults()
    assert [o["Key"] for o in list_objects(bucket, BUCKET, "one/", page_size=1, workers=4)] == keys
    assert loopback.request_counts["ListObjects"] <= len(keys) + 1


def test_iter_objects_lists_through_it_and_stops_early(bucket, loopback):
    keys = [f"k/{i:05d}" for i in range(2500)]
    loopback.bulk_put(BUCKET, keys)
    assert [o["Key"] for o in iter_objects(bucket, BUCKET, "k/")] == keys
    first = iter_objects(bucket, BUCKET, "k/")
    assert next(first)["Key"] == keys[0]
    first.close()  # a consumer that stops early stops the listing


def test_key_space_keeps_order_and_cuts_between_keys():
    space = KeySpace("p/", "p/0000")
    space.learn([f"p/{i:04d}" for i in range(1000)])
    values = [space.value(f"p/{i:04d}") for i in range(0, 1000, 7)]
    assert values == sorted(values)
    a, b = space.value("p/0100"), space.value("p/0900")
    middle = space.key((a + b) // 2)
    assert "p/0100" < middle < "p/0900"


def test_cuts_keep_digits_where_the_keys_have_digits():
    """A plate's images teach the key space letters; a cut with a letter where the tiles
    have digits lies past every tile of the digit before it, on a page boundary, and its
    range paid a request for no key."""
    space = KeySpace("p/", "p/a-img.tiff")
    space.learn(["p/a-img.tiff", *[f"p/t{i:07d}" for i in range(1000)]])
    space.learn([f"p/t{i:07d}" for i in range(1000, 2000)])
    lo, hi = space.value("p/t0001000"), space.value("p/t0003000")
    cuts = [space.key(v) for v in range(lo, hi, (hi - lo) // 997)]
    assert all("p/t0001000" <= c < "p/t0003000" for c in cuts)
    # a letter after digits lies past every key of those digits: 'p/t0001r' right after
    # 'p/t0001999', a page's boundary
    assert not [c for c in cuts if re.match(r"p/t\d{0,6}[a-z]", c)]


def test_hashed_names_are_cut_with_letters_and_digits_alike():
    """A page of hashed names shares its first hex digits (a digit, then a letter). Taken as
    the kinds of character every key holds there, they rounded cuts elsewhere in the key
    space down to a digit, short of where they were asked for: ranges ended early and paid a
    request more (``bench.list_bench --simulate 0.05``: 1.18 requests a serial page, 1.10
    once kinds came from every page)."""
    rng = random.Random(5)

    def page(head: str) -> list[str]:
        return sorted(f"p/{head}{rng.getrandbits(152):038x}" for _ in range(1000))

    space = KeySpace("p/", "p/3a")
    space.learn(page("3a"))
    space.learn(page("b4"))  # the page learned last: a letter, then a digit
    lo, hi = space.value("p/c1"), space.value("p/d0")
    cuts = [space.key(v) for v in range(lo, hi, (hi - lo) // 64)]
    assert all("p/c1" <= c < "p/d0" for c in cuts)
    assert {c[3] for c in cuts} & set("abcdef")  # the letters where hashed names have them


def test_a_delimiter_every_key_shares_is_no_digit_of_the_key_space():
    """A whole bucket of ``data/0000000`` …: the key space's digits began a few characters
    before the keys' common prefix ends, back over the ``/``. As a digit, it left a value no
    key has in every place after it, cuts landed up to a thousand keys off, and the bucket
    listed as slowly as one page after another (643 s against 101 s for an unchanged backup
    of 100,000 objects at D = 40)."""
    keys = [f"data/{i:07d}" for i in range(20_000)]
    space = KeySpace("", keys[0])
    density = Density(space)
    for start in range(0, len(keys), 1000):
        space.learn(keys[start : start + 1000])
        density.add_page(keys[start : start + 1000])
    for i in range(0, 19_000, 777):
        cut = density.ahead(keys[i], 994)
        assert cut is not None
        assert abs(bisect.bisect_right(keys, cut) - (i + 1) - 994) <= 10


def test_hashed_names_cost_few_requests_past_the_serial_pages():
    """Counts of hashed names between two cuts vary by about their square root. Margins
    taken as a share of the keys planned (one and a half times the largest recent miss), a
    probe's miss counted where it was cut short halfway to the end of the key space (which
    widened every later margin to a quarter of a page), probes of odd sizes there, and
    ranges of one page cut: 73-77 requests for these 60 pages. Margins from the misses'
    mean and spread scaled by the square root of the keys, probes in whole pages, and only
    ranges of eight pages cut where cuts miss: 63-64."""
    keys = sorted(f"h/{hashlib.sha1(str(i).encode()).hexdigest()}" for i in range(60_000))
    pages = _Pages(keys)
    assert [o["Key"] for o in list_objects(pages, BUCKET, "h/", workers=16)] == keys
    assert pages.most >= 6
    # 63-64 requests for these 60 pages over ten runs; 73-77 before
    assert pages.requests <= 1.10 * len(keys) / 1000


def open_temporary_files() -> int:
    """Files this process holds open that were removed from the temporary directory (the
    listing's spools); sockets and pipes, which other tests' pools keep, are not counted."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        count += target.startswith(tempfile.gettempdir()) and target.endswith("(deleted)")
    return count


def test_a_range_that_fails_raises_at_the_consumer_and_leaves_no_files_open(bucket, loopback):
    keys = [f"fail/{i:05d}" for i in range(3000)]
    loopback.bulk_put(BUCKET, keys)
    fds = open_temporary_files()
    listing = list_objects(bucket, BUCKET, "fail/", page_size=100, workers=6)
    assert next(listing)["Key"] == keys[0]  # the first page is listed alone
    loopback.inject_error("GET", "", operation="ListObjects", status=403, code="AccessDenied")
    with pytest.raises(ClientError, match="AccessDenied"):
        list(listing)
    loopback.clear_faults()
    assert open_temporary_files() <= fds  # spools of ranges listed ahead closed


class _Pages:
    """A ListObjectsV2 of sorted keys in memory, each page a short round trip, counting the
    requests out at once."""

    def __init__(self, keys: list[str]) -> None:
        self.keys, self.requests, self.out, self.most = keys, 0, 0, 0
        self.lock = threading.Lock()

    def list_objects_v2(self, Bucket, Prefix, StartAfter="", MaxKeys=1000, **_):
        with self.lock:
            self.requests += 1
            self.out += 1
            self.most = max(self.most, self.out)
        time.sleep(0.02)
        at = bisect.bisect_right(self.keys, StartAfter)
        page = self.keys[at : at + MaxKeys]
        with self.lock:
            self.out -= 1
        return {
            "Contents": [{"Key": k, "Size": 1, "ETag": '"e"'} for k in page],
            "IsTruncated": at + MaxKeys < len(self.keys),
        }


PLATE = "projects/p/b/images/PLATE__2026-11-21T00_00_00-Measurement 1/"


@pytest.mark.parametrize("prefix", [PLATE + "Images/", PLATE], ids=["images-folder", "plate"])
def test_a_few_keys_before_many_others_do_not_hold_the_listing_serial(prefix):
    """A plate's images, then 20,000 tiles under the same prefix: the images' distance from
    the tiles in the key space once made every cut and probe miss, and the listing went
    page by page with at most three requests out. Listed from the plate's prefix, as the
    archive lists it, the images also kept the common prefix at ``Images/``, the key
    space's digits ended before the tiles' counter, and the listing went page by page."""
    images = [f"{PLATE}Images/r01c01f{i:02d}p01-ch1sk1fk1fl1.tiff" for i in range(1, 13)]
    keys = sorted(images + [f"{PLATE}Images/tiles/t{i:07d}" for i in range(20_000)])
    pages = _Pages(keys)
    assert [o["Key"] for o in list_objects(pages, BUCKET, prefix, workers=8)] == keys
    assert pages.most >= 4  # two probes and the open range were all it ever had out
    # 27-31 requests for these 21 pages over 25 runs from either prefix: a few past the pages
    assert pages.requests <= 1.75 * len(keys) / 1000
