"""The one S3 access layer: client construction, the transient-error taxonomy, listing, transfers.

Every module gets its client from :func:`s3_client`. With no credentials block,
boto3's standard chain decides everything (environment, profiles, instance
roles, ``AWS_ENDPOINT_URL`` for S3-compatible endpoints); with the name of a
prefect-aws ``AwsCredentials`` block, the block's session and client
parameters are used. Either way botocore retries throttling and 5xx itself
(standard mode); :func:`retry_if_transient` lets Prefect retry a whole task for
the same kinds of errors and nothing else.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)

from tasks.errors import BucketNotFoundError

MIB = 1024 * 1024
#: S3 refuses more parts than this in one multipart upload.
MAX_UPLOAD_PARTS = 10_000
#: The smallest part S3 accepts (but for the last one).
MIN_PART_SIZE = 5 * MIB
#: The AWS CLI's starting part size; it doubles until the parts fit.
DEFAULT_PART_SIZE = 8 * MIB
#: Keys per DeleteObjects request (the API's maximum).
DELETE_BATCH = 1000

CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 10},
    max_pool_connections=128,
    connect_timeout=10,
    read_timeout=120,
    tcp_keepalive=True,
)

#: Error codes worth trying again: throttling, timeouts, server-side failures.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalError",
        "ServiceUnavailable",
        "BandwidthLimitExceeded",
        "500",
        "502",
        "503",
        "504",
    }
)
_TRANSIENT_EXCEPTIONS = (
    EndpointConnectionError,
    ConnectionClosedError,
    ConnectTimeoutError,
    ReadTimeoutError,
    IncompleteReadError,
    ResponseStreamingError,
    ConnectionError,
    TimeoutError,
)

#: Answers that look transient (503) but mean "not now for this request": botocore's own
#: retries must not spin on them, the caller decides (Expedited falls back to Standard).
NOT_RETRIED_CODES = frozenset({"GlacierExpeditedRetrievalNotAvailable"})

_clients: dict[tuple[str | None, bool], Any] = {}
_clients_lock = threading.Lock()


def s3_client(credentials_block: str | None = None, botocore_retries: bool = True) -> Any:
    """A shared, thread-safe S3 client for this process (one per credentials block).

    ``botocore_retries=False`` gives a client that makes each request once, for callers
    that classify every answer themselves (restore requests).
    """
    with _clients_lock:
        client = _clients.get((credentials_block, botocore_retries))
        if client is None:
            client = _make_client(credentials_block, botocore_retries)
            _clients[(credentials_block, botocore_retries)] = client
        return client


def reset_clients() -> None:
    """Forget cached clients (after the environment's endpoint or credentials change)."""
    with _clients_lock:
        _clients.clear()


def _make_client(credentials_block: str | None, botocore_retries: bool) -> Any:
    config = (
        CLIENT_CONFIG
        if botocore_retries
        else CLIENT_CONFIG.merge(
            Config(
                retries={"mode": "standard", "total_max_attempts": 1},
                # the requests these clients make (restores) need no payload checksum
                request_checksum_calculation="when_required",
            )
        )
    )
    if credentials_block is None:
        return boto3.session.Session().client("s3", config=config)
    from prefect_aws import AwsCredentials

    block = AwsCredentials.load(credentials_block)
    params = block.aws_client_parameters.get_params_override()
    own = params.get("config")
    params["config"] = config.merge(own) if own else config
    return block.get_boto3_session().client("s3", **params)


def error_code(exc: BaseException) -> str:
    """The S3 error code of a ClientError ('' for anything else)."""
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", ""))
    return ""


def http_status(exc: BaseException) -> int:
    if isinstance(exc, ClientError):
        return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    return 0


def is_transient(exc: BaseException) -> bool:
    """True for errors that may pass if tried again: throttling, 5xx, dropped connections."""
    if isinstance(exc, ClientError):
        code = error_code(exc)
        if code in NOT_RETRIED_CODES:
            return False
        return code in TRANSIENT_ERROR_CODES or http_status(exc) >= 500
    return isinstance(exc, _TRANSIENT_EXCEPTIONS)


def retry_if_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a task only when it failed for a transient reason."""
    try:
        state.result()
    except BaseException as exc:
        return is_transient(exc)
    return False


def check_bucket(client: Any, bucket: str) -> None:
    """Fail with a clear message when a bucket does not exist or can't be reached."""
    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        status = http_status(exc)
        if status == 404 or error_code(exc) in {"404", "NoSuchBucket"}:
            raise BucketNotFoundError(f"bucket {bucket!r} does not exist") from exc
        if status == 403:
            raise BucketNotFoundError(
                f"bucket {bucket!r}: access denied with the current credentials"
            ) from exc
        raise


def iter_objects(client: Any, bucket: str, prefix: str, **kwargs: Any) -> Iterator[dict]:
    """Every object under a prefix, one page (1,000 keys) in memory at a time."""
    paginator = client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix, **kwargs):
        yield from page.get("Contents", ())


def head(client: Any, bucket: str, key: str) -> dict | None:
    """HeadObject, or None when the key does not exist."""
    try:
        return client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        if http_status(exc) == 404 or error_code(exc) in {"404", "NoSuchKey", "NotFound"}:
            return None
        raise


def strip_etag(etag: str) -> str:
    return etag.strip().strip('"')


def get_text(client: Any, bucket: str, key: str) -> str | None:
    """A small text object (sidecars), or None when missing."""
    try:
        return client.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    except ClientError as exc:
        if error_code(exc) in {"NoSuchKey", "404"}:
            return None
        raise


def put_text(client: Any, bucket: str, key: str, text: str, **extra: Any) -> str:
    """Write a small text object; returns its ETag."""
    response = client.put_object(Bucket=bucket, Key=key, Body=text.encode(), **extra)
    return strip_etag(response["ETag"])


def part_size_for(size: int, start: int = DEFAULT_PART_SIZE) -> int:
    """The part size the AWS CLI would use: ``start``, doubled until ``size`` fits the parts."""
    part = max(start, MIN_PART_SIZE)
    while size > part * MAX_UPLOAD_PARTS:
        part *= 2
    return part


def transfer_config(part_size: int, concurrency: int) -> TransferConfig:
    """A TransferConfig whose multipart decision and part size match :func:`multipart_etag`."""
    return TransferConfig(
        multipart_threshold=part_size,
        multipart_chunksize=part_size,
        max_concurrency=concurrency,
        use_threads=concurrency > 1,
    )


def upload_path(
    client: Any,
    path: Path,
    bucket: str,
    key: str,
    *,
    part_size: int,
    concurrency: int = 8,
    **extra_args: Any,
) -> str:
    """Upload a local file with a known part size; returns the ETag S3 reports for it."""
    client.upload_file(
        str(path),
        bucket,
        key,
        ExtraArgs=extra_args or None,
        Config=transfer_config(part_size, concurrency),
    )
    return strip_etag(client.head_object(Bucket=bucket, Key=key)["ETag"])
