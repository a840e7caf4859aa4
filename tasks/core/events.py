"""The one Prefect event a restore flow emits when it ends, for automations and deployment
triggers (``coldflow.restore.complete`` starts downstream work once objects are readable).

Every restore flow (restore_prefix, restore_plates, bulk_restore) emits exactly one, named
``coldflow.restore.<status>`` (complete, failed, cancelled, timeout, requested), about the
resource ``coldflow.restore.s3://<bucket>/<prefix>``, with the counts as payload.
"""

from __future__ import annotations

from typing import Any

EVENT_PREFIX = "coldflow.restore."
STATUSES = ("Complete", "Failed", "Cancelled", "Timeout", "Requested")


def restore_resource(bucket: str, prefix: str) -> str:
    return f"coldflow.restore.s3://{bucket}/{prefix}"


def emit_restore_event(
    flow: str, status: str, bucket: str, prefix: str, payload: dict[str, Any]
) -> Any:
    """Emit ``coldflow.restore.<status>`` (the Event, or None outside Prefect)."""
    from prefect.context import FlowRunContext
    from prefect.events import emit_event

    related = []
    ctx = FlowRunContext.get()
    if ctx is not None and ctx.flow_run is not None:
        related.append(
            {
                "prefect.resource.id": f"prefect.flow-run.{ctx.flow_run.id}",
                "prefect.resource.role": "flow-run",
                "prefect.resource.name": ctx.flow_run.name,
            }
        )
    return emit_event(
        event=EVENT_PREFIX + status.lower(),
        resource={
            "prefect.resource.id": restore_resource(bucket, prefix),
            "prefect.resource.name": f"s3://{bucket}/{prefix}",
            "coldflow.flow": flow,
            "coldflow.bucket": bucket,
            "coldflow.prefix": prefix,
        },
        related=related,
        payload={"status": status, "bucket": bucket, "prefix": prefix, **payload},
    )
