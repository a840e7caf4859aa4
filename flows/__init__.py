"""coldflow's Prefect flows, one module per job.

Importing the package tunes how a flow run ends (tasks/core/engine.py): Prefect's heartbeat
thread stops at once, and the process skips a last garbage collection on exit.
"""

from tasks.core.engine import install

install()
