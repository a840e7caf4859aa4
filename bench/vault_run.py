"""One vault thaw in a process of its own, for bench.vault_bench: prints seconds and peak RSS.

python -m bench.vault_run plain|copy|flow VAULT ARCHIVE_ID BUCKET KEY
"""

from __future__ import annotations

import json
import re
import sys
import time


def peak_mib() -> float:
    """This process's peak resident memory (VmHWM: not inherited from the parent)."""
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1)) / 1024


def main(mode: str, vault: str, archive: str, bucket: str, key: str) -> None:
    """Time one thaw from after the imports (each mode's clock starts when its code is loaded)."""
    if mode == "plain":  # the established approach: whole output in memory, one PUT
        import boto3
        from botocore.config import Config

        t = time.monotonic()
        slow = Config(read_timeout=3600)  # one whole archive in one answer, on the model
        glacier, s3 = boto3.client("glacier", config=slow), boto3.client("s3", config=slow)
        job = glacier.initiate_job(
            vaultName=vault, jobParameters={"Type": "archive-retrieval", "ArchiveId": archive}
        )["jobId"]
        while not glacier.describe_job(vaultName=vault, jobId=job)["Completed"]:
            time.sleep(0.2)
        body = glacier.get_job_output(vaultName=vault, jobId=job)["body"].read()
        s3.put_object(Bucket=bucket, Key=key, Body=body)
    elif mode == "copy":  # coldflow's data path alone
        from tasks.core.clients import client
        from tasks.vault.copy import copy_job_output
        from tasks.vault.jobs import start_job

        t = time.monotonic()
        job = start_job(client("glacier", retries=False), vault, archive, "Standard")
        copy_job_output(client("glacier"), client("s3"), vault, job.job_id, archive, bucket, key)
    else:  # the whole flow, against the Prefect server in PREFECT_API_URL
        from flows.vault import thaw_vault_archives

        t = time.monotonic()
        thaw_vault_archives(vault, bucket, archives={archive: key}, poll_interval=0.2)
    print(json.dumps({"seconds": time.monotonic() - t, "peak_mib": peak_mib()}))


if __name__ == "__main__":
    main(*sys.argv[1:6])
