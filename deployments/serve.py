"""Serve every coldflow flow from this process, without a work pool.

    python -m deployments.serve

For people who want the UI's "Run" button and schedules without setting up a work pool
and worker. The deployments are read from prefect.yaml (names, entrypoints, descriptions,
tags, schedules, triggers, concurrency limits), so the two can't drift. Needs a Prefect API
(PREFECT_API_URL).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import yaml
from prefect import Flow, serve
from prefect.client.schemas.schedules import construct_schedule
from prefect.events import DeploymentEventTrigger

ROOT = Path(__file__).resolve().parent.parent
PREFECT_YAML = ROOT / "prefect.yaml"


def declared(path: Path = PREFECT_YAML) -> list[dict[str, Any]]:
    """The deployments prefect.yaml declares."""
    return yaml.safe_load(path.read_text())["deployments"]


def load_flow(entrypoint: str) -> Flow:
    """The flow an entrypoint (``flows/archive.py:archive_plates``) names."""
    file, _, name = entrypoint.partition(":")
    module = ".".join(Path(file).with_suffix("").parts)
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise LookupError(f"no module {module} for entrypoint {entrypoint}")
    return getattr(importlib.import_module(module), name)


def deployments(path: Path = PREFECT_YAML) -> list:
    """Every deployment of prefect.yaml, made servable from this process."""
    made = []
    for spec in declared(path):
        flow = load_flow(spec["entrypoint"])
        schedules = [
            {
                "schedule": construct_schedule(cron=s["cron"], timezone=s.get("timezone")),
                "active": s.get("active", True),
            }
            for s in spec.get("schedules") or []
        ]
        made.append(
            flow.to_deployment(
                name=spec["name"],
                description=spec.get("description"),
                tags=spec.get("tags"),
                schedules=schedules or None,
                concurrency_limit=spec.get("concurrency_limit"),
                parameters=spec.get("parameters") or {},
                triggers=[DeploymentEventTrigger(**t) for t in spec.get("triggers") or []] or None,
            )
        )
    return made


def main() -> None:
    serve(*deployments())


if __name__ == "__main__":
    main()
