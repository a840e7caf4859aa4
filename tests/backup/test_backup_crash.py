"""backup_bucket killed (SIGKILL, a real child process) inside the backup, then run again: the
re-run finishes with every source object in the backup byte-identical, every deleted key
tagged and in the ledger, nothing lost, and no object copied twice.

The kill comes from the endpoint when the request that marks a stage arrives: a copy not yet
served, a copy S3 made whose answer finds nobody, a deletion tag S3 wrote, and the ledger's
upload after every tag was written.
"""

from __future__ import annotations

from collections import Counter

import pytest
from conftest import kill_child_at, nth

from flows.backup import _ledger_key, backup_bucket
from tasks.formats.ledger import escape_key

pytestmark = pytest.mark.xdist_group("crash-matrix")

SRC, BAK = "src-bucket", "bak-bucket"
N = 160  #: more than the copies in flight at once (tasks.backup.tasks.WORKERS, 64)
SCRIPT = """
import sys
from flows.backup import backup_bucket
source, backup, work = sys.argv[1:]
backup_bucket(source, backup, work_dir=work, parallel_batches=1)
"""


def kind(request) -> str:
    """copy, tag, ledger or other: what a request to the backup bucket does."""
    if request.bucket != BAK or request.method != "PUT" or not request.key:
        return "other"
    if "tagging" in request.query:
        return "tag"
    if request.headers.get("x-amz-copy-source"):
        return "copy"
    return "ledger" if request.key == _ledger_key("") else "other"


STAGES = {
    "copy-not-served": ("copy", lambda: nth(20, lambda r: kind(r) == "copy"), False),
    "copy-served": ("copy", lambda: nth(20, lambda r: kind(r) == "copy"), True),
    "tag-served": ("delete", lambda: nth(2, lambda r: kind(r) == "tag"), True),
    "before-ledger": ("delete", lambda: nth(1, lambda r: kind(r) == "ledger"), False),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_backup_killed_then_rerun_loses_nothing_and_copies_nothing_twice(
    s3, loopback, tmp_path, stage
):
    for b in (SRC, BAK):
        s3.create_bucket(Bucket=b)
    bodies = {f"plate {i:02d}/ünï+{i}.bin": f"body {i}".encode() * (i + 1) for i in range(N)}
    for key, body in bodies.items():
        s3.put_object(Bucket=SRC, Key=key, Body=body)
    when, make, served = STAGES[stage]
    at = make()  # a fresh count for every run
    gone = sorted(bodies)[::6]
    if when == "delete":  # a full backup, then deletions in the source to tag
        backup_bucket(SRC, BAK, work_dir=str(tmp_path))
        for key in gone:
            s3.delete_object(Bucket=SRC, Key=key)
    writes: Counter = Counter()  # (kind, key) → requests S3 served, from the kill on

    def record(request, environ, start_response):
        if kind(request) != "other":
            writes[kind(request), request.key] += 1
        return None

    fired: list[tuple[str, str]] = []

    def kill_at(request) -> bool:
        if at(request):
            fired.append((kind(request), request.key))
            return True
        return False

    loopback.injector.responders.insert(0, record)
    kill_child_at(loopback, SCRIPT, [SRC, BAK, str(tmp_path)], kill_at, served=served)
    if not served:  # recorded on its way in, never served
        writes[fired[0]] -= 1
    loopback.injector.responders.insert(0, record)  # the kill cleared the responders

    result = backup_bucket(SRC, BAK, work_dir=str(tmp_path))

    assert result["failed"] == 0, result
    for key, body in bodies.items():  # every object is there, deleted ones included
        assert s3.get_object(Bucket=BAK, Key=key)["Body"].read() == body, key
        tags = {t["Key"] for t in s3.get_object_tagging(Bucket=BAK, Key=key)["TagSet"]}
        assert ("Deleted" in tags) == (when == "delete" and key in gone), key
    copies = {k: n for (what, k), n in writes.items() if what == "copy" and n}
    if when == "copy":  # the first run made some; together each key was copied once
        assert copies == dict.fromkeys(bodies, 1), copies
        assert 0 < result["copied"] < N
    else:
        assert not copies and result["copied"] == 0
        ledger = s3.get_object(Bucket=BAK, Key=_ledger_key(""))["Body"].read().decode()
        assert ledger.splitlines() == sorted(escape_key(k) for k in gone)
    assert backup_bucket(SRC, BAK, work_dir=str(tmp_path))["copied"] == 0
