"""plates.csv parsing: what passes, and that every problem is named."""

from __future__ import annotations

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
