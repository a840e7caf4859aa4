"""plates.csv parsing: what passes, and that every problem is named."""

from __future__ import annotations

import re

import pytest

from tasks.core.errors import PlatesFileError
from tasks.formats.plates_csv import Plate, read_plates


def test_reads_plates_with_spaces_and_utf8(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text(
        "plate_id,plate_id_full\n"
        "BR00092655,BR00092655__2017-12-10T12_48_16-Measurement 1\n"
        "PLÄTE2,PLÄTE2_voll\n",
        encoding="utf-8",
    )
    assert read_plates(str(path)) == [
        Plate("BR00092655", "BR00092655__2017-12-10T12_48_16-Measurement 1"),
        Plate("PLÄTE2", "PLÄTE2_voll"),
    ]


def test_extra_columns_are_fine(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text("plate_id,plate_id_full,notes\nA,A_full,x\n")
    assert read_plates(str(path)) == [Plate("A", "A_full")]


def test_every_problem_is_named_with_its_line(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text("plate_id,plate_id_full\nA,ok\nB/x,ok2\nC, padded\n")
    with pytest.raises(PlatesFileError) as failed:
        read_plates(str(path))
    text = str(failed.value)
    assert "line 3: plate_id 'B/x' contains a slash" in text
    assert "line 4: plate_id_full ' padded' has leading or trailing white space" in text


def test_numeric_looking_ids_stay_strings(tmp_path):
    path = tmp_path / "plates.csv"
    path.write_text("plate_id,plate_id_full\n007,007_full\n")
    assert read_plates(str(path))[0].plate_id == "007"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("plate_id\nA\n", "missing column(s) plate_id_full"),
        ("plate_id,plate_id_full\nA,A_full\nA,A_full\n", "'A' is listed more than once"),
        ("plate_id,plate_id_full\n..,x\n", "contains '..'"),
        ("plate_id,plate_id_full\nA,../etc\n", "contains a slash"),
        ("plate_id,plate_id_full\nA,/etc/passwd\n", "contains a slash"),
        ("plate_id,plate_id_full\nA\x00B,x\n", "contains a control character"),
        ('plate_id,plate_id_full\n"A\nB",x\n', "contains a control character"),
        ("plate_id,plate_id_full\n", "no plates listed"),
    ],
    ids=[
        "missing-column",
        "duplicate",
        "dotdot",
        "relative",
        "absolute",
        "nul",
        "newline",
        "empty",
    ],
)
def test_hostile_plates_files_are_refused_with_the_reason(tmp_path, text, said):
    path = tmp_path / "plates.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlatesFileError, match=re.escape(said)):
        read_plates(str(path))


def test_a_bom_and_a_hundred_thousand_rows_are_read(tmp_path):
    path = tmp_path / "plates.csv"
    rows = "".join(f"P{i},P{i}_full\n" for i in range(100_000))
    path.write_text("\ufeffplate_id,plate_id_full\n" + rows, encoding="utf-8")
    plates = read_plates(str(path))
    assert len(plates) == 100_000 and plates[0] == Plate("P0", "P0_full")
