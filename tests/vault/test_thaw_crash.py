"""thaw_vault_archives killed (SIGKILL, a real child process) inside the thaw, then run again:
the re-run finishes every archive with nothing lost and nothing done twice that Glacier or S3
would charge for again: no second retrieval job for an archive, no second copy of an archive
already copied and verified, no incomplete upload left behind.

The kill comes from the endpoint when the request that marks a stage arrives: while the jobs
run (the first poll), half-way through a multipart copy (a part upload, not served), and at
the first archive's delete (served: Glacier deletes it, the run dies before it hears so).
"""

from __future__ import annotations

from collections import Counter

import boto3
import pytest
from conftest import COLD, kill_child_at, nth
from test_thaw import FAST, VAULT, archive_ids, body_of

from flows.vault import thaw_vault_archives
from tasks.vault.copy import META_TREE_HASH
from tasks.vault.treehash import MIB, tree_hash

pytestmark = pytest.mark.xdist_group("crash-matrix")

SCRIPT = """
import sys
from flows.vault import thaw_vault_archives
vault, bucket, *pairs = sys.argv[1:]
thaw_vault_archives(vault, bucket, archives=dict(zip(pairs[::2], pairs[1::2])),
                    delete_archive=True, batch_size=1, parallel_batches=1,
                    poll_interval=0.1, max_poll_interval=0.2, timeout=60)
"""


STAGES = {
    # every job started, none copied yet
    "waiting": (lambda: nth(1, lambda r: r.operation == "Glacier:DescribeJob"), False),
    # the small archive is copied; the big one has a part up and dies at its second
    "mid-copy": (
        lambda: nth(2, lambda r: r.operation == "MultipartPut" and r.key.endswith("big.bin")),
        False,
    ),
    # both copied and verified; the first archive is deleted, the answer finds nobody
    "mid-delete": (lambda: nth(1, lambda r: r.operation == "Glacier:DeleteArchive"), True),
}


@pytest.mark.parametrize("stage", list(STAGES))
def test_thaw_killed_then_rerun_loses_nothing_and_copies_nothing_twice(s3, loopback, stage):
    g = boto3.client("glacier")
    g.create_vault(vaultName=VAULT)
    bodies = {"small.bin": b"a small archive", "big.bin": body_of(20 * MIB + 3, 7)}
    ids = {
        g.upload_archive(vaultName=VAULT, body=body)["archiveId"]: key
        for key, body in bodies.items()
    }
    loopback.vaults.durations["Standard"] = 0.5  # the first poll finds the jobs running
    puts: Counter = Counter()  # completed copies per key, both runs

    def record(request, environ, start_response):
        completes = request.operation == "MultipartPost" and "uploadId" in request.query
        if request.bucket == COLD and (completes or request.operation == "PutObject"):
            puts[request.key] += 1
        return None

    loopback.injector.responders.insert(0, record)
    make, served = STAGES[stage]
    at = make()  # a fresh count for every run
    pairs = [x for pair in ids.items() for x in pair]
    kill_child_at(loopback, SCRIPT, [VAULT, COLD, *pairs], at, served=served)
    loopback.injector.responders.insert(0, record)  # the kill cleared the responders

    rows = thaw_vault_archives(VAULT, COLD, archives=ids, delete_archive=True, **FAST)

    assert all(r["tree_hash_ok"] and r["deleted"] for r in rows), rows
    for key, body in bodies.items():
        got = s3.get_object(Bucket=COLD, Key=key)
        assert got["Body"].read() == body
        assert got["Metadata"][META_TREE_HASH] == tree_hash(body)
    loopback.vaults.durations["Standard"] = 0.0  # the inventory job below answers at once
    assert archive_ids(g) == set()
    # one retrieval job per archive across both runs, one completed copy per key
    assert sorted(a for _, a, _ in loopback.vaults.started if a) == sorted(ids)
    assert puts == dict.fromkeys(bodies, 1), puts
    assert not s3.list_multipart_uploads(Bucket=COLD).get("Uploads")
