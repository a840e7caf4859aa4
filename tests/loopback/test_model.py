"""The S3 speed model's parts: what counts against which ceiling, the token bucket, the latency
distribution it states, and SlowDown answers counted beside their operation. No test here
times anything: how close the model holds its figures is measured by ``bench.model_check``."""

from __future__ import annotations

import random
import statistics

import boto3
import pytest
import requests
from botocore.config import Config
from botocore.exceptions import ClientError

from loopback import LoopbackS3
from loopback.model import LISTING, SMALL, S3Model, TokenBucket, kind
from loopback.request import Request


def request(method: str, key: str = "k", bucket: str = "b", **query: str) -> Request:
    return Request(method, bucket, key, {k: [v] for k, v in query.items()}, {})


def client_of(server: LoopbackS3, config: Config | None = None):
    """A plain boto3 S3 client for ``server`` (a server of the test's own, not the session's)."""
    return boto3.client(
        "s3",
        endpoint_url=server.endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
        config=config,
    )


def test_requests_count_against_their_ceiling():
    assert kind(request("GET")) == "read" and kind(request("HEAD")) == "read"
    assert kind(request("GET", key="")) == "read"  # a listing page
    assert kind(request("PUT")) == "write" and kind(request("DELETE")) == "write"
    assert kind(request("POST", key="", delete="")) == "write"
    assert kind(request("POST", restore="")) == "restore"
    assert kind(request("PUT", key="")) is None  # creating a bucket


def test_the_token_bucket_passes_its_rate_and_burst_and_no_more():
    now = [0.0]
    bucket = TokenBucket(rate=100.0, burst=10.0, clock=lambda: now[0])
    assert sum(bucket.take() for _ in range(50)) == 10  # the burst, at once
    passed = 0
    for _ in range(1000):  # 10 s in 10 ms steps, 5 tries each
        now[0] += 0.01
        passed += sum(bucket.take() for _ in range(5))
    assert 995 <= passed <= 1001


@pytest.mark.parametrize("shape", [SMALL, LISTING], ids=["small", "listing"])
def test_latency_draws_hold_the_stated_median_and_p99(shape):
    rng = random.Random(3)
    draws = sorted(shape.draw(rng) for _ in range(40_000))
    assert statistics.median(draws) == pytest.approx(shape.median, rel=0.03)
    assert draws[int(len(draws) * 0.99)] == pytest.approx(shape.p99, rel=0.05)
    # the quantiles the model check compares a measured distribution with
    assert shape.quantile(0.5) == pytest.approx(shape.median)
    assert shape.quantile(0.99) == pytest.approx(shape.p99, rel=1e-3)
    assert draws[int(len(draws) * 0.9)] == pytest.approx(shape.quantile(0.9), rel=0.03)


def test_dilation_scales_latency_and_divides_ceilings():
    model = S3Model(dilation=10)
    assert model.ceilings == {"read": 550.0, "write": 350.0, "restore": 100.0}
    assert model.describe()["latency_seconds"]["small"]["median"] == pytest.approx(0.2)
    with pytest.raises(ValueError):
        S3Model(dilation=0)


def test_above_a_ceiling_the_answer_is_slow_down_counted_beside_its_operation():
    with LoopbackS3(model="s3", dilation=10) as server:
        model = server.model
        assert model is not None
        model.latency = lambda request: 0.0  # this test is about ceilings, not time
        model.ceilings["restore"] = 0.01  # one request, then the burst is spent
        s3 = client_of(server, Config(retries={"total_max_attempts": 1, "mode": "standard"}))
        s3.create_bucket(Bucket="model-bucket")
        s3.put_object(Bucket="model-bucket", Key="k", Body=b"x", StorageClass="GLACIER")
        answers = []
        for _ in range(3):
            try:
                s3.restore_object(Bucket="model-bucket", Key="k", RestoreRequest={"Days": 1})
                answers.append("ok")
            except ClientError as exc:
                answers.append(exc.response["Error"]["Code"])
        assert answers[0] == "ok" and answers[1:] == ["SlowDown", "SlowDown"]
        counts = requests.get(f"{server.endpoint_url}/_loopback/counts", timeout=10).json()
        assert counts["RestoreObject"] == 3 and counts["SlowDown:RestoreObject"] == 2
        described = requests.get(f"{server.endpoint_url}/_loopback/model", timeout=10).json()
        assert described["dilation"] == 10


def test_only_bodies_take_transfer_time():
    """A HEAD answers with the object's Content-Length and no body: only latency, where a GET
    of the same object also takes its bytes' time at one connection's rate."""
    with LoopbackS3(model="s3", dilation=10) as server:
        model = server.model
        assert model is not None
        model.latency = lambda request: 0.0
        paced: dict[str, tuple[int, int]] = {}
        plain = model.paced

        def noting(request, answer, started, sent, received):
            paced[request.method] = sent, received
            return plain(request, answer, started, sent, received)

        model.paced = noting
        s3 = client_of(server)
        s3.create_bucket(Bucket="model-bucket")
        s3.put_object(Bucket="model-bucket", Key="k", Body=b"x" * 100_000)
        assert paced["PUT"][0] >= 100_000
        assert s3.head_object(Bucket="model-bucket", Key="k")["ContentLength"] == 100_000
        assert paced["HEAD"] == (0, 0)
        s3.get_object(Bucket="model-bucket", Key="k")["Body"].read()
        assert paced["GET"] == (0, 100_000)
