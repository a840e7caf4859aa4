"""The coldflow command: help, options for every flow parameter, exit codes, real runs in a
child process against the loopback endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BATCH, COLD, LIVE, PROJECT, SPACED, source_keys

from flows import cli

COLDFLOW = str(Path(sys.executable).parent / "coldflow")  # the installed console script
PLATE_B = ("BR00099999", "BR00099999_full")


def coldflow(
    *args: str, env: dict | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [COLDFLOW, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_every_documented_subcommand_exists_with_one_line_help(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    for name in (
        "archive",
        "restore-prefix",
        "restore-plates",
        "thaw-vault",
        "bulk-restore",
        "backup",
        "restore-bucket",
        "compare-buckets",
    ):
        assert f"    {name}" in out


@pytest.mark.parametrize("name", list(cli.COMMANDS))
def test_help_of_every_subcommand_names_every_flow_parameter(name, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main([name, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    flow = cli.load(cli.commands()[name])
    schema = flow.parameters.model_dump()
    for param, prop in schema["properties"].items():
        if param == cli.positional(flow):
            assert param in out
        else:
            assert cli.option(param) in out, f"{name}: no option for {param}"
        if prop.get("description"):
            assert " ".join(prop["description"].split()[:3]) in " ".join(out.split())


def test_every_flow_parameter_reaches_the_flow():
    """Parse a full command line per flow: every parameter comes out under its own name."""
    parser, found = cli.build_parser()
    for name, command in found.items():
        flow = cli.load(command)
        schema = flow.parameters.model_dump()
        argv = [name]
        for param, prop in schema["properties"].items():
            kind, inner = cli._kinds(prop)
            if kind == "boolean":
                argv.append(cli.option(param))
                continue
            value = (
                str(inner["enum"][0])
                if "enum" in inner
                else {
                    "integer": str(inner.get("minimum", 1)),
                    "number": str(inner.get("exclusiveMinimum", 0) + 1),
                    "object": '{"a": "b"}',
                }.get(kind, "x")
            )
            if param == cli.positional(flow):
                argv.append(value)
            else:
                argv += [cli.option(param), value]
        parsed = vars(parser.parse_args(argv))
        assert set(schema["properties"]) <= set(parsed), name


def test_limits_come_from_the_flow(capsys):
    with pytest.raises(SystemExit) as exited:
        cli.main(
            [
                "archive",
                "p.csv",
                "--project-name",
                "p",
                "--batch-id",
                "b",
                "--bucket",
                "x",
                "--cold-bucket",
                "y",
                "--max-parallel-plates",
                "99",
            ]
        )
    assert exited.value.code == 2
    assert "must be <= 16" in capsys.readouterr().err


def test_bad_input_exits_2_with_one_line_and_no_traceback(loopback, s3, tmp_path):
    csv = tmp_path / "plates.csv"
    csv.write_text("plate_id,plate_id_full\n../evil,x\n")
    done = coldflow(
        "archive",
        str(csv),
        "--project-name",
        PROJECT,
        "--batch-id",
        BATCH,
        "--bucket",
        LIVE,
        "--cold-bucket",
        COLD,
        env=loopback.environ(),
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("coldflow archive:") and "evil" in last


def test_unknown_bucket_exits_2_before_any_write(loopback, s3, capfd):
    loopback.clear_faults()
    code = cli.main(["restore-prefix", "no-such-bucket", "--prefix", "x/"])
    err = capfd.readouterr().err
    assert code == 2
    assert "no-such-bucket" in err.strip().splitlines()[-1]
    writes = {k for k in loopback.request_counts if k.startswith(("Put", "Restore", "Delete"))}
    assert writes == set()


def test_a_dry_run_prints_what_the_flow_found_about_its_buckets(loopback, s3, capfd, tmp_path):
    s3.create_bucket(Bucket="backup-copies")
    s3.put_bucket_versioning(Bucket=LIVE, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(
        Bucket="backup-copies",
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms"}}]
        },
    )
    code = cli.main(
        ["backup", LIVE, "--backup", "backup-copies", "--dry-run", "--work-dir", str(tmp_path)]
    )
    out = capfd.readouterr().out
    assert code == 0
    assert f"| {LIVE} | Enabled | AES256 |" in out
    assert "| backup-copies | off | aws:kms |" in out
    assert "dry_run" in out.split("| backup-copies |")[1]  # then the result
    assert not {k for k in loopback.request_counts if k.startswith(("Put", "Delete"))} - {
        "PutBucketVersioning",
        "PutBucketEncryption",
    }


def test_dry_run_then_archive_in_a_child_process(loopback, s3, seed, plates_csv, tmp_path):
    originals = seed(SPACED)
    csv = plates_csv(SPACED)
    common = [
        "archive",
        csv,
        "--project-name",
        PROJECT,
        "--batch-id",
        BATCH,
        "--bucket",
        LIVE,
        "--cold-bucket",
        COLD,
        "--scratch-dir",
        str(tmp_path / "scratch"),
    ]
    dry = coldflow(*common, "--dry-run", env=loopback.environ())
    assert dry.returncode == 0, dry.stderr[-2000:]
    assert "dry-run" in dry.stdout and SPACED[0] in dry.stdout
    # what the run found and estimated comes first: the estimate, the buckets' facts
    assert "| bucket | versioning |" in dry.stdout and f"| {COLD} | off |" in dry.stdout
    assert "Contents" not in s3.list_objects_v2(Bucket=COLD)
    done = coldflow(*common, "--delete-source", env=loopback.environ())
    assert done.returncode == 0, done.stderr[-2000:]
    assert "archived" in done.stdout and SPACED[0] in done.stdout
    cold = {o["Key"] for o in s3.list_objects_v2(Bucket=COLD)["Contents"]}
    assert any(k.endswith("_images_illum_analysis.tar.gz") for k in cold)
    assert source_keys(s3) == {} and originals


def test_exit_1_when_a_plate_fails(loopback, s3, seed, plates_csv, tmp_path, capfd):
    seed(SPACED)
    csv = plates_csv(SPACED, PLATE_B)  # PLATE_B has no objects
    code = cli.main(
        [
            "archive",
            csv,
            "--project-name",
            PROJECT,
            "--batch-id",
            BATCH,
            "--bucket",
            LIVE,
            "--cold-bucket",
            COLD,
            "--scratch-dir",
            str(tmp_path / "scratch"),
        ]
    )
    out, err = capfd.readouterr()
    assert code == 1, err[-2000:]
    assert err.strip().splitlines()[-1].startswith("coldflow archive:")
    assert PLATE_B[0] in out and "empty" in out
    assert SPACED[0] in out and "archived" in out
