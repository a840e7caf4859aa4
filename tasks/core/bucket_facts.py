"""What a flow finds about a bucket before it acts: versioning, default encryption and its KMS
key, Object Lock and its default retention, lifecycle rules. Read-only calls; an answer the
caller may not read (AccessDenied) is "unknown", never a failure."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from botocore.exceptions import ClientError

from tasks.core.errors import BucketNotFoundError, error_code, http_status

__all__ = [
    "BucketFacts",
    "announce_buckets",
    "bucket_facts",
    "facts_markdown",
    "read_buckets",
]

UNKNOWN = "unknown"
#: What the restore flows do on a versioned bucket, said before they act.
RESTORES_CURRENT = "the current version of each key is restored (older versions are not)"
READS_CURRENT = "current versions are read; what is written becomes a new current version"
#: Error codes that mean "this bucket has no such configuration".
NOT_CONFIGURED = frozenset(
    {
        "ServerSideEncryptionConfigurationNotFoundError",
        "ObjectLockConfigurationNotFoundError",
        "NoSuchLifecycleConfiguration",
    }
)


@dataclass(frozen=True)
class BucketFacts:
    """One bucket's settings that change what a flow's writes and deletes do."""

    bucket: str
    versioning: str  # Enabled, Suspended, off, unknown
    encryption: str  # aws:kms, aws:kms:dsse, AES256, unknown
    kms_key: str  # the default KMS key, "" where none
    object_lock: str  # off, on, on (COMPLIANCE 30 days), unknown
    lifecycle: str  # "none", a summary of the enabled rules, unknown

    def as_row(self) -> dict[str, str]:
        return asdict(self)


def _ask(call: Callable[..., dict], bucket: str) -> dict | None:
    """The answer, {} where the bucket has no such configuration, None where it is unknown."""
    try:
        return call(Bucket=bucket)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist") from exc
        if error_code(exc) in NOT_CONFIGURED:
            return {}
        if http_status(exc) in (403, 501) or error_code(exc) in ("AccessDenied", "NotImplemented"):
            return None
        raise


def _rule_summary(rule: dict) -> str:
    where = (rule.get("Filter") or {}).get("Prefix", rule.get("Prefix", "")) or "*"
    acts = [
        f"{t.get('StorageClass')} after {t.get('Days', t.get('Date'))} d"
        for t in rule.get("Transitions", [])
    ]
    if "Expiration" in rule:
        acts.append(f"expire after {rule['Expiration'].get('Days', '?')} d")
    if "NoncurrentVersionExpiration" in rule:
        days = rule["NoncurrentVersionExpiration"].get("NoncurrentDays", "?")
        acts.append(f"noncurrent expire after {days} d")
    return f"{where}: {', '.join(acts) or 'other actions'}"


def bucket_facts(client: Any, bucket: str) -> BucketFacts:
    """Read a bucket's versioning, encryption, Object Lock and lifecycle (read-only; the four
    questions asked at once, so they cost one round trip). An unknown bucket is
    :class:`BucketNotFoundError`."""
    questions = (
        client.get_bucket_versioning,
        client.get_bucket_encryption,
        client.get_object_lock_configuration,
        client.get_bucket_lifecycle_configuration,
    )
    with ThreadPoolExecutor(len(questions)) as pool:
        answers = list(pool.map(lambda ask: _ask(ask, bucket), questions))
    versioning, encryption, lock, lifecycle = answers
    algorithm, key = UNKNOWN, ""
    if encryption is not None:
        rules = encryption.get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        default = rules[0].get("ApplyServerSideEncryptionByDefault", {}) if rules else {}
        algorithm = default.get("SSEAlgorithm", "AES256")  # S3 encrypts with SSE-S3 by default
        key = default.get("KMSMasterKeyID", "")
    lock_text = UNKNOWN
    if lock is not None:
        conf = lock.get("ObjectLockConfiguration", {})
        lock_text = "on" if conf.get("ObjectLockEnabled") == "Enabled" else "off"
        retention = conf.get("Rule", {}).get("DefaultRetention")
        if lock_text == "on" and retention:
            span = retention.get("Days") or retention.get("Years")
            unit = "days" if "Days" in retention else "years"
            lock_text = f"on ({retention.get('Mode')} {span} {unit})"
    life = UNKNOWN
    if lifecycle is not None:
        enabled = [r for r in lifecycle.get("Rules", []) if r.get("Status") == "Enabled"]
        life = "; ".join(_rule_summary(r) for r in enabled) or "none"
    return BucketFacts(
        bucket,
        UNKNOWN if versioning is None else versioning.get("Status", "off"),
        algorithm,
        key,
        lock_text,
        life,
    )


def facts_markdown(facts: list[BucketFacts]) -> str:
    """The facts as a Markdown table, for an estimate or preflight artifact."""
    lines = [
        "| bucket | versioning | encryption | KMS key | Object Lock | lifecycle rules |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {f.bucket} | {f.versioning} | {f.encryption} | {f.kms_key or '-'} | "
        f"{f.object_lock} | {f.lifecycle} |"
        for f in facts
    ]
    return "\n".join(lines)


def read_buckets(client: Any, buckets: list[str], note: str = "") -> list[BucketFacts]:
    """Read each bucket's facts (once per bucket) and log one line each; ``note`` says what
    the flow does on a versioned bucket (e.g. that it restores the current versions) and is
    logged for every versioned bucket. Call after the buckets are known to exist."""
    from tasks.core.log import run_logger

    log = run_logger()
    with ThreadPoolExecutor(4) as pool:
        found = list(pool.map(lambda b: bucket_facts(client, b), dict.fromkeys(buckets)))
    for facts in found:
        log.info("s3://%s: %s", facts.bucket, facts.as_row())
        if note and facts.versioning in ("Enabled", "Suspended"):
            log.info("s3://%s is versioned (%s): %s", facts.bucket, facts.versioning, note)
    return found


def announce_buckets(
    client: Any, buckets: list[str], flow: str, note: str = ""
) -> list[BucketFacts]:
    """:func:`read_buckets`, then the facts published as the ``<flow>-buckets`` Markdown
    artifact, before the flow acts."""
    from prefect.artifacts import create_markdown_artifact

    found = read_buckets(client, buckets, note)
    create_markdown_artifact(
        key=f"{flow}-buckets",
        markdown="### The buckets\n\n" + facts_markdown(found),
        description="What the flow found about its buckets before it acted (read-only)",
    )
    return found
