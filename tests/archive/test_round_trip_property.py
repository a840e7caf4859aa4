"""Property: random plate ids and object names either round-trip byte-identical through
archive (with delete) and restore, or are refused before anything is written."""

from __future__ import annotations

import csv

from conftest import BATCH, COLD, LIVE, PROJECT, fresh_endpoint
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flows.archive import archive_plates
from flows.restore import restore_plates
from tasks.core.errors import InputError, PlatesFailedError

WRITES = ("PutObject", "MultipartPost", "MultipartPut", "DeleteObjects", "DeleteObject")
#: Letters, digits, punctuation, spaces, UTF-8 and the odd control character.
TEXT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=16
)


def seed(s3, plate_id: str, plate_id_full: str, names: list[str]) -> dict[str, bytes]:
    root = f"projects/{PROJECT}"
    keys = {f"{root}/{BATCH}/images/{plate_id_full}/Images/{n}": n.encode() * 3 for n in names}
    keys[f"{root}/workspace/backend/{BATCH}/{plate_id}/{plate_id}.sqlite"] = b"sqlite " * 10
    for key, body in keys.items():
        s3.put_object(Bucket=LIVE, Key=key, Body=body)
    return keys


@settings(
    max_examples=6,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@example(plate_id="BR00092655", plate_id_full="BR00092655 full", names=["r01 ch1+%.tiff"])
@example(plate_id="Plaque-é", plate_id_full="Plaque-é_2017", names=["ünï cødé.tiff", "x"])
@example(plate_id="../up", plate_id_full="x", names=["a"])  # refused
@example(plate_id="A", plate_id_full="A\tB", names=["a"])  # refused
@given(
    plate_id=TEXT,
    plate_id_full=TEXT,
    names=st.lists(TEXT, min_size=1, max_size=3, unique=True),
)
def test_ids_and_keys_round_trip_or_are_refused_before_any_write(
    loopback, tmp_path_factory, plate_id, plate_id_full, names
):
    s3 = fresh_endpoint(loopback)
    tmp = tmp_path_factory.mktemp("prop")
    plates = tmp / "plates.csv"
    with open(plates, "w", encoding="utf-8", newline="") as f:
        csv.writer(f).writerows([["plate_id", "plate_id_full"], [plate_id, plate_id_full]])
    try:
        originals = seed(s3, plate_id, plate_id_full, names)
    except Exception:
        return  # S3 itself refuses such a key: nothing to archive
    loopback.clear_faults()
    try:
        archive_plates(
            str(plates),
            PROJECT,
            BATCH,
            LIVE,
            COLD,
            scratch_dir=str(tmp / "s"),
            storage_class="STANDARD",
            delete_source=True,
        )
    except (InputError, PlatesFailedError) as exc:
        # refused for the ids or the keys, never for anything else
        assert isinstance(exc, InputError) or "Rename it before archiving" in str(exc), exc
        writes = {op for op in loopback.request_counts if op in WRITES}
        assert writes == set() and not s3.list_objects_v2(Bucket=COLD).get("Contents")
        for key, body in originals.items():  # refused: every source still there, unchanged
            assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body
        return
    for key in originals:  # archived, verified and deleted
        assert s3.list_objects_v2(Bucket=LIVE, Prefix=key).get("KeyCount", 0) == 0
    restore_plates(
        str(plates), PROJECT, BATCH, LIVE, COLD, scratch_dir=str(tmp / "r"), poll_interval=0.1
    )
    for key, body in originals.items():
        assert s3.get_object(Bucket=LIVE, Key=key)["Body"].read() == body
