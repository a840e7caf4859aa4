"""Serve every coldflow flow from this process, without a work pool.

    python -m deployments.serve

For people who want the UI's "Run" button and schedules without setting up a
work pool and worker: each flow becomes a deployment served here (the same
names and schedule as prefect.yaml). Needs a Prefect API (PREFECT_API_URL).
"""

from __future__ import annotations

from prefect import serve

from flows.archive import archive_plates
from flows.restore import restore_plates, restore_prefix
from flows.sweep import restore_progress_sweep

#: The sweep's schedule, as in prefect.yaml.
SWEEP_CRON = "0 * * * *"


def deployments() -> list:
    return [
        archive_plates.to_deployment(name="archive-plates", tags=["coldflow", "archive"]),
        restore_prefix.to_deployment(name="restore-prefix", tags=["coldflow", "restore"]),
        restore_plates.to_deployment(name="restore-plates", tags=["coldflow", "restore"]),
        restore_progress_sweep.to_deployment(
            name="restore-progress-sweep", cron=SWEEP_CRON, tags=["coldflow", "restore"]
        ),
    ]


def main() -> None:
    serve(*deployments())


if __name__ == "__main__":
    main()
