"""Every Python and shell example in README.md and docs/ runs against the loopback endpoint,
so a renamed flow or parameter fails here instead of in a reader's terminal.

The examples of one page run in page order in one namespace, on one world the page's
examples expect: the buckets they name, a plate in the live bucket, a vault with an archive,
plates.csv in the working folder. Parameters are pointed at the loopback: restores finish in
a fraction of a second, sensors poll every tenth of a second, scratch is the test's. A fence
after ``<!-- example: not run (reason) -->`` needs what the loopback can't give (a real account,
a running server, the suite itself): its flow calls are bound to the flows' signatures and
its ``coldflow`` lines parsed by the command's own parser, its ``make`` targets looked up.
"""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from pathlib import Path

import boto3
import pytest
from conftest import BATCH, PROJECT, SMALL

from flows import cli
from loopback.seed import seed_plates

ROOT = Path(__file__).resolve().parents[2]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(
    r"(?P<mark><!-- example: not run[^>]*-->\s*)?^```(?P<lang>python|sh)\n(?P<code>.*?)^```",
    re.S | re.M,
)
PLATE = ("BR00092655", "BR00092655__2017-12-10T12_48_16-Measurement 1")
FAST = {"poll_interval": 0.1, "max_poll_interval": 0.5}
SCRATCH = {"work_dir", "scratch_dir"}
PRINTED = re.compile(r"(?m)^print\(.*\)  # (.+)$")


def examples(page: Path) -> list[tuple[str, str, bool]]:
    """(language, code, runs) of every fence on ``page``, in order."""
    text = page.read_text(encoding="utf-8")
    return [(m["lang"], m["code"], not m["mark"]) for m in FENCE.finditer(text)]


def flows_by_name() -> dict[str, object]:
    found = {}
    for command in cli.commands().values():
        flow = cli.load(command)
        found[flow.fn.__name__] = flow
    return found


class PointAtLoopback(ast.NodeTransformer):
    """Flow calls get the loopback's pace: fast polls and the test's scratch and work dirs."""

    def __init__(self, flows: dict[str, object], scratch: Path) -> None:
        self.flows, self.scratch = flows, scratch

    def visit_Call(self, node: ast.Call) -> ast.Call:
        self.generic_visit(node)
        name = node.func.id if isinstance(node.func, ast.Name) else None
        flow = self.flows.get(name or "")
        if flow is None:
            return node
        accepted = inspect.signature(flow.fn).parameters
        given = {k.arg for k in node.keywords}
        node.keywords = [k for k in node.keywords if k.arg not in SCRATCH]
        for key in SCRATCH & accepted.keys():
            node.keywords.append(ast.keyword(key, ast.Constant(str(self.scratch))))
        for key, value in FAST.items():
            if key in accepted and key not in given:
                node.keywords.append(ast.keyword(key, ast.Constant(value)))
        return node


def bind_calls(code: str, flows: dict[str, object]) -> int:
    """Bind every flow call in ``code`` to its flow's signature; how many there were."""
    bound = 0
    for node in ast.walk(ast.parse(code)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            flow = flows.get(node.func.id)
            if flow is not None:
                args = [None] * len(node.args)
                inspect.signature(flow.fn).bind(*args, **{k.arg: None for k in node.keywords})
                bound += 1
    return bound


def shell_lines(code: str) -> list[list[str]]:
    """Each command of a shell fence, continuation lines joined, comments dropped."""
    joined = code.replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    return set(re.findall(r"(?m)^([a-z][a-z-]*):", text))


@pytest.fixture
def world(s3, loopback, tmp_path, monkeypatch):
    """What the examples expect: their buckets, a plate, a vault archive, plates.csv here."""
    for bucket in ("imaging-cold", "imaging-backup"):
        s3.create_bucket(Bucket=bucket)
    seed_plates(s3, "imaging-live", PROJECT, BATCH, [PLATE], SMALL)
    glacier = boto3.client("glacier")
    glacier.create_vault(vaultName="lab-vault")
    glacier.upload_archive(
        vaultName="lab-vault", body=b"an old tarball", archiveDescription="plate-1.tar.gz"
    )
    for tier in ("Expedited", "Standard", "Bulk"):
        loopback.tiers.durations[tier] = 0.2
    loopback.batch.task_seconds = 0.01
    loopback.vaults.durations.update(dict.fromkeys(("Expedited", "Standard", "Bulk"), 0.2))
    for i in range(3):  # older archived objects, for the bulk restore
        s3.put_object(
            Bucket="imaging-cold",
            Key=f"imaging_analysis/older/{i}",
            Body=b"x",
            StorageClass="GLACIER",
        )
    (tmp_path / "plates.csv").write_text(f"plate_id,plate_id_full\n{PLATE[0]},{PLATE[1]}\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def archived_first(world: Path) -> None:
    """A page about bringing plates back starts from an archived plate."""
    from flows.archive import archive_plates

    archive_plates(
        "plates.csv",
        PROJECT,
        BATCH,
        "imaging-live",
        "imaging-cold",
        scratch_dir=str(world / "scratch"),
        delete_source=True,
    )


#: What a page's examples expect beyond the world, by page name.
GIVEN = {"restore-plates.md": archived_first}


def test_every_page_with_examples_is_found():
    counted = {p.name: len(examples(p)) for p in PAGES}
    assert counted["README.md"] >= 8  # the two commands, one example per job, the command


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_a_pages_examples_run_against_the_loopback(page, world, capsys):
    flows = flows_by_name()
    targets = make_targets()
    namespace: dict = {"__name__": "example"}
    if page.name in GIVEN:
        GIVEN[page.name](world)
    for lang, code, runs in examples(page):
        if lang == "python":
            if runs:
                tree = PointAtLoopback(flows, world / "scratch").visit(ast.parse(code))
                capsys.readouterr()
                exec(compile(ast.fix_missing_locations(tree), str(page), "exec"), namespace)
                printed = capsys.readouterr().out.splitlines()
                for expected in PRINTED.findall(code):  # a print's result, stated beside it
                    assert expected.strip() in printed, f"{page.name}: printed {printed}"
            else:
                bind_calls(code, flows)
            continue
        for argv in shell_lines(code):
            if argv[0] == "make":
                assert set(argv[1:]) <= targets, f"{page.name}: no make target {argv[1:]}"
            elif argv[0] == "coldflow" and "--help" in argv:
                with pytest.raises(SystemExit) as shown:
                    cli.main(argv[1:])
                assert shown.value.code == 0
            elif argv[0] == "coldflow":
                parser, _ = cli.build_parser()
                parsed = parser.parse_args(argv[1:])  # names and values as the flow takes them
                if runs and not vars(parsed).get("deployment"):
                    flow = cli.load(cli.commands()[argv[1]])
                    accepted = inspect.signature(flow.fn).parameters
                    extra = [f"{cli.option(k)}={v}" for k, v in FAST.items() if k in accepted]
                    assert cli.main([*argv[1:], *extra]) == 0, f"{page.name}: {argv}"
            else:
                assert not runs, f"{page.name}: mark a fence that runs {argv[0]!r} as not run"
