"""The plain functions under the flows: ETags, listings, plates.csv, layouts."""

from __future__ import annotations

import hashlib
import io
import platform
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError
from conftest import LIVE

from tasks.core.concurrency import bounded_map
from tasks.core.errors import InputError, UnsupportedKeyError
from tasks.core.memory import limit_malloc_arenas
from tasks.core.retry import is_transient
from tasks.core.s3 import MIB, part_size_for, upload_path
from tasks.formats.checksums import MultipartHasher, hash_file
from tasks.formats.layout import CELLPAINTING, Layout, resolve_layout
from tasks.formats.listing import ObjectEntry, check_key, compare_entries, sort_file


@pytest.mark.parametrize("size", [0, 1, 5 * MIB - 1, 5 * MIB, 5 * MIB + 1, 11 * MIB + 7])
def test_local_etag_equals_the_endpoints(s3, tmp_path, size):
    path = tmp_path / "blob"
    path.write_bytes(hashlib.sha256(b"x").digest() * (size // 32) + b"y" * (size % 32))
    part = 5 * MIB
    upload_path(s3, path, LIVE, "blob", part_size=part, concurrency=4)
    remote = s3.head_object(Bucket=LIVE, Key="blob")["ETag"].strip('"')
    assert hash_file(path, part).etag == remote
    assert ("-" in remote) is (size >= part)


def test_hasher_handles_writes_across_part_boundaries():
    data = bytes(range(256)) * 50_000
    whole, pieces = MultipartHasher(5 * MIB), MultipartHasher(5 * MIB)
    whole.update(data)
    for i in range(0, len(data), 777_777):
        pieces.update(data[i : i + 777_777])
    assert whole.etag == pieces.etag and whole.md5 == hashlib.md5(data).hexdigest()


def test_part_size_doubles_until_parts_fit():
    assert part_size_for(1) == 8 * MIB
    assert part_size_for(80_000 * MIB) == 8 * MIB
    assert part_size_for(80_000 * MIB + 1) == 16 * MIB
    assert part_size_for(10, start=1) == 5 * MIB  # never below S3's minimum


def test_entries_round_trip_and_untrimmed_format():
    e = ObjectEntry("projects/p/a b/ü.tiff", 1234, "abc", "2026-11-21 08:00:00")
    assert ObjectEntry.from_line(e.to_line()) == e
    line = e.untrimmed_line()
    assert line == "2026-11-21 08:00:00       1234 projects/p/a b/ü.tiff\n"
    assert ObjectEntry.from_untrimmed_line(line) == e._replace(etag="")
    leading = ObjectEntry(" x", 1, "", "2026-11-21 08:00:00")
    assert ObjectEntry.from_untrimmed_line(leading.untrimmed_line()).key == " x"


def test_sort_file_sorts_by_bytes(tmp_path):
    path = tmp_path / "l.txt"
    lines = ["b\t1\n", "a b\t2\n", "a\t3\n", "é\t4\n", "Z\t5\n"]
    path.write_text("".join(lines), encoding="utf-8")
    sort_file(path)
    assert path.read_bytes() == b"".join(sorted(line.encode() for line in lines))


def test_compare_entries_classifies_every_key():
    t = "2026-01-01 00:00:00"
    recorded = [ObjectEntry(k, 1, "e", t) for k in ("a", "b", "c", "d")]
    current = [
        ObjectEntry("a", 1, "e", t),
        ObjectEntry("b", 2, "e", t),
        ObjectEntry("bb", 1, "e", t),
        ObjectEntry("d", 1, "x", t),
    ]
    seen: list[str] = []
    drift = compare_entries(recorded, current, on_verified=lambda e: seen.append(e.key))
    assert (drift.verified, seen) == (1, ["a"])
    assert drift.changed == ["b", "d"] and drift.appeared == ["bb"] and drift.vanished == ["c"]
    assert not drift.clean


def test_recorded_entries_without_etag_compare_size_and_time():
    rec = ObjectEntry("a", 1, "", "2026-01-01 00:00:00")
    assert compare_entries([rec], [rec._replace(etag="z")]).verified == 1
    assert compare_entries([rec], [rec._replace(modified="2026-01-02 00:00:00")]).n_changed == 1


@pytest.mark.parametrize("key", ["a\tb", "a\nb", "a/../b", "a//b", "./a"])
def test_keys_the_layout_cannot_hold(key):
    with pytest.raises(UnsupportedKeyError):
        check_key(key)


def test_plate_keys_of_the_default_layout():
    where = CELLPAINTING.for_plate("P", "B", "PL", "PL full")
    assert where.tag == "P_B_PL"
    assert where.prefixes == [
        "projects/P/B/images/PL full/",
        "projects/P/B/illum/PL/",
        "projects/P/workspace/analysis/B/PL/",
        "projects/P/workspace/backend/B/PL/",
    ]
    assert where.member_name("projects/P/B/illum/PL/x") == "P_B_PL/P/B/illum/PL/x"
    assert where.tarball("backend") == "imaging_analysis/P/plates/P_B_PL_backend.tar.gz"
    assert where.tarball("backend", "zstd").endswith("P_B_PL_backend.tar.zst")
    assert where.s3_listing == "projects/P/workspace/backup/P_B_PL_file_listing_s3.txt"


def test_layout_from_a_json_file(tmp_path):
    other = Layout(
        name="lab2",
        source_root="data/",
        bundles=[{"name": "all", "prefixes": ["data/{project_name}/{plate_id}/"]}],
        cold_prefix="cold/{project_name}/",
        backup_prefix="data/{project_name}/bk/",
    )
    path = tmp_path / "lab2.json"
    path.write_text(other.model_dump_json())
    layout = resolve_layout(str(path))
    assert layout.for_plate("P", "B", "X", "X").prefixes == ["data/P/X/"]
    with pytest.raises(InputError, match="unknown layout"):
        resolve_layout("nope")


def test_transient_errors_are_told_apart():
    def client_error(code: str, status: int) -> ClientError:
        return ClientError(
            {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "GetObject"
        )

    assert is_transient(client_error("SlowDown", 503))
    assert is_transient(client_error("InternalError", 500))
    assert not is_transient(client_error("AccessDenied", 403))
    assert not is_transient(client_error("NoSuchKey", 404))
    assert is_transient(ConnectionResetError())


def test_bounded_map_keeps_a_cap_on_work_in_flight():
    drawn = []

    def items():
        for i in range(1000):
            drawn.append(i)
            yield i

    results = bounded_map(lambda i: i * 2, items(), workers=2, in_flight=4)
    first = next(results)
    assert first in {0, 2, 4, 6} and len(drawn) <= 5
    assert sorted([first, *results]) == [i * 2 for i in range(1000)]


def test_bounded_map_raises_the_first_error():
    def boom(i: int) -> int:
        if i == 3:
            raise ValueError("three")
        return i

    with pytest.raises(ValueError, match="three"):
        list(bounded_map(boom, range(100), workers=2))


def test_tar_of_an_empty_bundle_is_valid():
    from tasks.formats.tarball import tar_listing_lines, write_tarball

    buf = io.BytesIO()
    assert write_tarball([], buf, "gzip") == 0
    buf.seek(0)
    assert list(tar_listing_lines(buf, "gzip", "T")) == []


def test_malloc_arenas_are_capped_unless_the_operator_chose(monkeypatch):
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the environment's value stands
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt's arena cap is glibc's")
    assert limit_malloc_arenas() is True


def test_deployments_give_flow_runs_the_arena_cap():
    spec = yaml.safe_load((Path(__file__).resolve().parents[2] / "prefect.yaml").read_text())
    for deployment in spec["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert env["MALLOC_ARENA_MAX"] == "2", deployment["name"]
