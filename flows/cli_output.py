"""What the ``coldflow`` command shows: a flow's result as a table, a one-line progress
display from the run's progress artifacts, and a run's artifacts as text."""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

__all__ = ["Progress", "artifacts_of", "failed", "summary_table"]


def summary_table(result: Any) -> str:
    """The flow's result as the table its summary artifact shows."""
    import pandas as pd

    if isinstance(result, list) and result and all(isinstance(r, dict) for r in result):
        frame = pd.DataFrame(result)
    elif isinstance(result, dict):
        frame = pd.DataFrame(
            [
                {"": k, "value": json.dumps(v) if isinstance(v, list | dict) else v}
                for k, v in result.items()
            ]
        )
    else:
        return str(result)
    with pd.option_context(
        "display.max_rows", 500, "display.max_columns", 50, "display.width", 200
    ):
        return frame.to_string(index=False)


def failed(result: Any) -> bool:
    """True when a returned result reports items that were not done."""
    if isinstance(result, dict):
        status = str(result.get("status", ""))
        if status in {"Failed", "Cancelled", "Timeout"}:
            return True
        return bool(result.get("failed") or result.get("error"))
    if isinstance(result, list):
        return any(isinstance(r, dict) and r.get("status") in ("failed", "error") for r in result)
    return False


class Progress:
    """A one-line progress display on a terminal, from the run's progress artifacts."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.started = time.time()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> Progress:
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join(timeout=5)
            sys.stderr.write("\r\033[K")

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            try:
                shown = self._line()
            except Exception:
                continue
            sys.stderr.write("\r\033[K" + shown[:200])
            sys.stderr.flush()

    def _line(self) -> str:
        import asyncio

        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterType

        async def read() -> list:
            async with get_client() as client:
                return await client.read_artifacts(
                    artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])),
                    limit=10,
                )

        recent = [
            a for a in asyncio.run(read()) if a.updated and a.updated.timestamp() >= self.started
        ]
        parts = [f"{a.description or a.key}: {float(a.data):.1f}%" for a in recent[:3]]
        elapsed = time.time() - self.started
        return f"[{elapsed:5.0f} s] " + ("; ".join(parts) or "running")


def artifacts_of(flow_run_id: Any, kind: str) -> str:
    """The run's artifacts of one kind as text: tables as aligned columns, Markdown as is."""
    import asyncio

    import pandas as pd
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterType,
    )
    from prefect.client.schemas.sorting import ArtifactSort

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                    type=ArtifactFilterType(any_=[kind]),
                ),
                sort=ArtifactSort.CREATED_DESC,
            )

    out = []
    for artifact in reversed(asyncio.run(read())):  # in the order the run made them
        if kind == "markdown":
            out.append(str(artifact.data))
            continue
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        out.append(f"{artifact.key}:\n{pd.DataFrame(data).to_string(index=False)}")
    return "\n\n".join(out)
