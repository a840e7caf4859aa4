"""How a flow run ends: heartbeats that stop with the run, no garbage sweep at process exit."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import prefect.flow_engine as flow_engine
import pytest
from prefect import flow

import flows.common  # noqa: F401  (installs the engine changes, as every flow module does)
from tasks.core import engine

ROOT = Path(__file__).resolve().parents[2]


class Engine:
    """What the heartbeat context reads of Prefect's flow-run engine."""

    def __init__(self, seconds: int | None = 30) -> None:
        self.heartbeat_seconds = seconds
        self.flow_run = SimpleNamespace(state=SimpleNamespace(is_final=lambda: False))
        self.logger = SimpleNamespace(debug=lambda *a, **k: None)
        self.beats = 0
        self.first = threading.Event()

    def _build_heartbeat_event_template(self) -> tuple[dict, list]:
        return {"prefect.resource.id": "prefect.flow-run.x"}, []

    def _emit_flow_run_heartbeat(self, resource: dict, related: list) -> None:
        self.beats += 1
        self.first.set()


def test_flows_use_the_heartbeat_that_stops_with_the_run() -> None:
    assert flow_engine._send_heartbeats is engine.send_heartbeats
    assert engine.install() is True  # a second install changes nothing


@pytest.mark.parametrize(
    ("version", "replaced"),
    [
        ("3.8.8", True),
        ("3.9.1", True),
        ("3.10.0", False),
        ("3.7.8", False),
        ("4.0.0rc1", False),
        ("unknown", False),
    ],
)
def test_only_releases_read_are_changed(
    monkeypatch: pytest.MonkeyPatch, version: str, replaced: bool
) -> None:
    monkeypatch.setattr(engine.prefect, "__version__", version)
    assert engine._replaceable() is replaced


def test_the_heartbeat_thread_has_ended_when_the_run_has(monkeypatch: pytest.MonkeyPatch) -> None:
    # Prefect's own loop sleeps in 1 s steps: with a sleep that does not return, its thread
    # would outlive the run (the join gives up after 2 s)
    never = threading.Event()
    monkeypatch.setattr(flow_engine.time, "sleep", lambda seconds: never.wait(30))
    before = set(threading.enumerate())
    run = Engine()
    with engine.send_heartbeats(run):
        assert run.first.wait(10)
    assert set(threading.enumerate()) - before == set()
    assert run.beats == 1  # the first heartbeat goes out when the run starts
    never.set()


def test_heartbeats_repeat_until_stopped_or_the_run_is_final() -> None:
    beats: list[int] = []
    stop = threading.Event()
    engine.beat(stop, 0.001, lambda: beats.append(1) or (len(beats) == 3 and stop.set()), bool)
    assert len(beats) == 3
    final = iter([False, False, True])
    beats.clear()
    engine.beat(threading.Event(), 0.001, lambda: beats.append(1), lambda: next(final))
    assert len(beats) == 2


def test_no_heartbeats_when_they_are_turned_off() -> None:
    run = Engine(seconds=None)
    before = threading.active_count()
    with engine.send_heartbeats(run):
        assert threading.active_count() == before
    assert run.beats == 0


def test_a_real_flow_run_sends_its_heartbeat(monkeypatch: pytest.MonkeyPatch) -> None:
    sent: list[Any] = []
    original = flow_engine.FlowRunEngine._emit_flow_run_heartbeat

    def spy(self: Any, *args: Any, **kwargs: Any) -> None:
        sent.append(self.flow_run.id)
        original(self, *args, **kwargs)

    monkeypatch.setattr(flow_engine.FlowRunEngine, "_emit_flow_run_heartbeat", spy)

    @flow
    def short() -> int:
        return 1

    state = short(return_state=True)
    assert state.result() == 1
    assert sent == [state.state_details.flow_run_id]


def test_the_garbage_collector_is_frozen_only_at_exit() -> None:
    # atexit runs last what was registered first: this check sees the state the
    # interpreter's teardown will meet
    probe = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('at exit', gc.get_freeze_count() > 0))\n"
        "import flows.common\n"
        "print('running', gc.get_freeze_count() > 0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split("\n")
    assert out[:2] == ["running False", "at exit True"]
