"""Let the loopback endpoint forget what S3 has deleted.

moto keeps every model instance it ever made in a list on its class, for its dashboard, so
objects deleted from a bucket (and whole dropped buckets) stay in memory until a reset: five
Python objects and ~4 KiB per key. A benchmark's endpoint grew by ~40 MiB with each
10,000-key bucket it created and dropped, and slowed as it grew, so a tool measured later in a
round met a slower endpoint than the one before it. Here those lists hold their
instances weakly: an object stays as long as its bucket does, as in S3.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Iterator
from typing import Any


class _Tracked(weakref.WeakValueDictionary):
    """What moto does with the list (``append``, iteration), without keeping anything alive.
    Keyed by identity: some of its models are unhashable."""

    def append(self, item: Any) -> None:
        self[id(item)] = item

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self.values()))


def install() -> None:
    """Track moto's model instances weakly (again after a moto reset, which puts lists back)."""
    # the services the endpoint serves, so that their model classes are known here
    import moto.glacier.models
    import moto.s3.models
    import moto.s3control.models  # noqa: F401
    from moto.core.model_instances import model_data

    for models in model_data.values():
        for cls in models.values():
            tracked = cls.instances_tracked
            if not isinstance(tracked, _Tracked) and cls.__weakrefoffset__:
                cls.instances_tracked = _Tracked((id(item), item) for item in tracked)
    # a deleted key closes its buffer when it is collected, and says so: expected here
    warnings.filterwarnings("ignore", "S3 key was not disposed of in time", ResourceWarning)
