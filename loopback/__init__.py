"""Local S3 for the demo, tests and benchmarks: moto's server on 127.0.0.1 plus what it lacks."""

from loopback.server import LoopbackS3

__all__ = ["LoopbackS3"]
