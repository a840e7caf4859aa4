"""Local S3 for the demo, tests and benchmarks: moto's server on 127.0.0.1 plus what it lacks."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from loopback.server import LoopbackS3

__all__ = ["LoopbackS3"]


def __getattr__(name: str) -> object:
    # moto loads only where the endpoint runs, not in its clients (benchmarks measure them)
    if name == "LoopbackS3":
        from loopback.server import LoopbackS3

        return LoopbackS3
    raise AttributeError(name)
