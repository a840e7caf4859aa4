"""Deployments are declared once, in prefect.yaml; `make serve` derives its own from it."""

from __future__ import annotations

import inspect

from deployments.serve import declared, deployments, load_flow


def test_serve_offers_exactly_what_prefect_yaml_declares():
    specs = {d["name"]: d for d in declared()}
    served = {d.name: d for d in deployments()}
    assert set(served) == set(specs)
    for name, spec in specs.items():
        d = served[name]
        assert d.entrypoint == spec["entrypoint"], name
        assert d.tags == spec.get("tags"), name
        crons = [(s.schedule.cron, s.active) for s in d.schedules]
        declared_crons = [(s["cron"], s.get("active", True)) for s in spec.get("schedules") or []]
        assert crons == declared_crons, name
        limit = d.concurrency_limit
        assert limit == spec.get("concurrency_limit"), name


def test_every_declared_entrypoint_is_a_documented_flow():
    for spec in declared():
        flow = load_flow(spec["entrypoint"])
        assert flow.name == spec["name"], spec["entrypoint"]
        documented = inspect.getdoc(flow.fn) or ""
        for parameter in inspect.signature(flow.fn).parameters:
            assert f"{parameter}:" in documented, (spec["name"], parameter)
