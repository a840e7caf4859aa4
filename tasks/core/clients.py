"""One client factory for every AWS service coldflow talks to, and for s3fs / pandas.

With no credentials block, boto3's standard chain decides everything (environment,
profiles, instance roles, ``AWS_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_<SERVICE>`` for
compatible endpoints). With the name of a prefect-aws ``AwsCredentials`` block, the
block's session and client parameters are used for every client *and* for ``s3://``
files read through s3fs (plates.csv, ledgers), so a run reads with the credentials it
writes with. Clients are cached per process and thread-safe.
"""

from __future__ import annotations

import platform
import threading
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import boto3
import botocore
from botocore.config import Config
from botocore.utils import parse_timestamp as botocore_timestamp

from tasks.core import pace
from tasks.core.retry import CALL_ATTEMPTS


def user_agent() -> str:
    """coldflow's User-Agent: the tool, its SDK and Python, as S3 access logs and CloudTrail
    show them.

    Set once, it spares botocore rebuilding its own (twenty-odd sanitised components) twice
    for every request: about a tenth of a restore request's client CPU.
    """
    try:
        ours = version("coldflow")
    except PackageNotFoundError:  # run from a checkout that was not installed
        ours = "dev"
    return (
        f"coldflow/{ours} Boto3/{boto3.__version__} Botocore/{botocore.__version__} "
        f"Python/{platform.python_version()} {platform.system()}/{platform.release()}"
    )


#: botocore's retry mode: standard, or adaptive when the pace is left to botocore.
RETRY_MODE = "adaptive" if pace.MODE == "adaptive" else "standard"

CLIENT_CONFIG = Config(
    user_agent=user_agent(),
    retries={"mode": RETRY_MODE, "total_max_attempts": CALL_ATTEMPTS},
    max_pool_connections=256,
    connect_timeout=10,
    read_timeout=120,
    tcp_keepalive=True,
)
#: For clients whose callers classify every answer themselves: each request is sent once.
SINGLE_ATTEMPT = Config(
    retries={"mode": RETRY_MODE, "total_max_attempts": 1},
    # the requests these clients make (restores, job starts) need no payload checksum
    request_checksum_calculation="when_required",
    # coldflow builds these requests itself (tested against the service model): skipping
    # botocore's validation leaves more of the CPU to thousands of restore requests a second
    parameter_validation=False,
)

_clients: dict[tuple[str, str | None, bool], Any] = {}
_sessions: dict[str | None, Any] = {}
_lock = threading.Lock()


def _block(credentials_block: str) -> Any:
    from prefect_aws import AwsCredentials

    return AwsCredentials.load(credentials_block)


def parse_timestamp(value: Any) -> datetime:
    """A response timestamp as an aware datetime: ISO 8601 ones (every listed object's
    ``LastModified``) by the standard library, anything else by botocore's parser.

    botocore's own parser (dateutil) takes ~75 µs a timestamp, five sixths of the client's
    time for a listing page, and a listing of a million keys parses a million of them.
    """
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    return botocore_timestamp(value)


def session(credentials_block: str | None = None) -> boto3.session.Session:
    """The boto3 session for a credentials block (the standard chain without one)."""
    with _lock:
        found = _sessions.get(credentials_block)
        if found is None:
            found = (
                boto3.session.Session()
                if credentials_block is None
                else _block(credentials_block).get_boto3_session()
            )
            # the hook the AWS CLI uses for its timestamp format; boto3 exposes the botocore
            # session only as ``_session``
            found._session.get_component("response_parser_factory").set_parser_defaults(
                timestamp_parser=parse_timestamp
            )
            _sessions[credentials_block] = found
        return found


def _client_params(credentials_block: str | None, config: Config) -> dict[str, Any]:
    if credentials_block is None:
        return {"config": config}
    params = _block(credentials_block).aws_client_parameters.get_params_override()
    own = params.get("config")
    params["config"] = config.merge(own) if own else config
    return params


def client(service: str, credentials_block: str | None = None, retries: bool = True) -> Any:
    """A shared client for ``service`` (s3, glacier, s3control, sts, ...).

    ``retries=False`` gives a client that sends each request once, for callers that
    classify every answer themselves (restore requests, vault job starts).
    """
    key = (service, credentials_block, retries)
    with _lock:
        found = _clients.get(key)
    if found is not None:
        return found
    config = CLIENT_CONFIG if retries else CLIENT_CONFIG.merge(SINGLE_ATTEMPT)
    made = session(credentials_block).client(service, **_client_params(credentials_block, config))
    pace.install(made)  # every request through the process's pace (tasks.core.pace)
    if service == "s3":
        _parse_pages_one_at_a_time(made)
    if service == "s3control" and is_custom_endpoint(made.meta.endpoint_url):
        made.meta.events.register("before-sign.s3-control", _strip_account_host(made))
    with _lock:
        return _clients.setdefault(key, made)


#: Operations answered with pages of up to 1,000 entries: hundreds of KB of XML each.
PAGED = ("ListObjectsV2", "ListObjectVersions", "ListMultipartUploads", "ListParts")
_parsing = threading.Lock()


class _Parsing(threading.local):
    held = False


_parse_held = _Parsing()


def _parse_pages_one_at_a_time(made: Any) -> None:
    """Let one thread of the process at a time parse a listing page.

    A page being parsed takes ~2.5 MiB (its XML tree and botocore's dicts, against ~0.3 MiB
    of body). Parsing holds the GIL, so pages listed by two dozen threads at once are parsed
    one after another anyway, but interleaved: every page in flight is half-parsed at the
    same time, and a parallel listing's memory grows by that much per thread. In turn, it
    grows by the bodies only (measured: +62 MiB at 24 threads, +21 MiB in turn, no slower).
    The lock is taken once the body is read (``before-parse``) and given back once the page
    is parsed (``response-received``) or the call failed (``after-call-error``).
    """
    events = made.meta.events

    def enter(**_: Any) -> None:
        _parsing.acquire()
        _parse_held.held = True

    def leave(**_: Any) -> None:
        if _parse_held.held:
            _parse_held.held = False
            _parsing.release()

    for operation in PAGED:
        events.register(f"before-parse.s3.{operation}", enter, unique_id=f"cf-parse-{operation}")
        for event in ("response-received", "after-call-error"):
            events.register(f"{event}.s3.{operation}", leave, unique_id=f"cf-{event}-{operation}")


#: Host name suffixes of AWS's own endpoints, where the account id belongs in the host name.
AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".api.aws")


def is_custom_endpoint(endpoint_url: str) -> bool:
    """True for an S3-compatible endpoint of our own (loopback, MinIO), not AWS."""
    host = urlsplit(endpoint_url).hostname or ""
    return not host.endswith(AWS_DOMAINS)


def _strip_account_host(made: Any) -> Any:
    """A ``before-sign`` handler: send S3 Control requests to the endpoint as configured.

    botocore's endpoint rules put the account id in the host name
    (``123456789012.127.0.0.1:5055``), which only AWS resolves; a custom endpoint gets its own
    host back. Real AWS keeps the prefix: the handler is registered for custom endpoints only.
    """
    configured = urlsplit(made.meta.endpoint_url).netloc

    def strip(request: Any, **_: Any) -> None:
        parts = urlsplit(request.url)
        head, _, rest = parts.netloc.partition(".")
        if rest == configured and head.isdigit():
            request.url = urlunsplit(parts._replace(netloc=configured))
            request.headers["Host"] = configured

    return strip


def s3_client(credentials_block: str | None = None, botocore_retries: bool = True) -> Any:
    """The S3 client (see :func:`client`)."""
    return client("s3", credentials_block, botocore_retries)


def reset_clients() -> None:
    """Forget cached sessions and clients (after the endpoint or credentials change)."""
    with _lock:
        _clients.clear()
        _sessions.clear()
    pace.reset_paces()


def storage_options(credentials_block: str | None = None) -> dict[str, Any]:
    """``storage_options`` for pandas / s3fs that use the same credentials and endpoint as
    :func:`client` (s3fs's listing cache off: other clients write these buckets too)."""
    options: dict[str, Any] = {"use_listings_cache": False}
    if credentials_block is None:
        return options
    creds = session(credentials_block).get_credentials()
    if creds is not None:
        frozen = creds.get_frozen_credentials()
        options.update(key=frozen.access_key, secret=frozen.secret_key)
        if frozen.token:
            options["token"] = frozen.token
    params = _block(credentials_block).aws_client_parameters.get_params_override()
    client_kwargs = {
        k: v for k, v in params.items() if k in {"endpoint_url", "verify", "use_ssl"} and v
    }
    region = session(credentials_block).region_name
    if region:
        client_kwargs["region_name"] = region
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    return options


def read_options(path: str, credentials_block: str | None = None) -> dict[str, Any]:
    """Keyword arguments for a pandas reader of ``path``: credentials for ``s3://`` paths."""
    if path.startswith("s3://"):
        return {"storage_options": storage_options(credentials_block)}
    return {}
