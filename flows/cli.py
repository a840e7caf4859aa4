"""The ``coldflow`` command: every flow from a terminal, a cron line or a Makefile.

    coldflow archive plates.csv --project-name P --batch-id B --bucket live \\
        --cold-bucket cold --delete-source
    coldflow restore-prefix cold-bucket --prefix imaging_analysis/P/ --tier Bulk
    coldflow bulk-restore cold-bucket --prefix big/ --deployment --watch

Subcommands and their options are derived from the flows themselves: the same parameter
schema (names, types, defaults, limits, help from the docstring) the Prefect UI shows as a
form, so a new flow parameter is on the command line without being written twice. The first
required parameter is positional; the rest are ``--kebab-case`` options.

Runs the flow in this process by default (on the API ``PREFECT_API_URL`` names, or the
embedded one), or with ``--deployment`` submits it to its deployment on the server and,
with ``--watch``, follows the run to its end. Exit codes: 0 done, 1 some items failed,
2 bad input (one line on stderr), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from flows.cli_output import Progress, artifacts_of, failed, summary_table

DONE, ITEMS_FAILED, BAD_INPUT, INTERRUPTED = 0, 1, 2, 130


@dataclass(frozen=True)
class Command:
    """One subcommand: the flow it runs and the deployment it submits to."""

    name: str
    entrypoint: str
    deployment: str


#: Subcommand → deployment in prefect.yaml (whose entrypoint names the flow).
COMMANDS = {
    "archive": "archive-plates",
    "restore-prefix": "restore-prefix",
    "restore-plates": "restore-plates",
    "thaw-vault": "thaw-vault",
    "bulk-restore": "bulk-restore",
    "backup": "backup-bucket",
    "restore-bucket": "restore-bucket",
    "compare-buckets": "compare-buckets",
    "check-restored": "check-restored",
    "sweep": "restore-progress-sweep",
}


def commands() -> dict[str, Command]:
    from deployments.serve import declared

    entrypoints = {d["name"]: d["entrypoint"] for d in declared()}
    return {name: Command(name, entrypoints[dep], dep) for name, dep in COMMANDS.items()}


def load(command: Command) -> Any:
    from deployments.serve import load_flow

    return load_flow(command.entrypoint)


# -- options from the flow's parameter schema ----------------------------------------------


def option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _kinds(prop: dict) -> tuple[str, dict]:
    """(JSON type, its schema) of a property, looking through ``anyOf [T, null]``."""
    for choice in prop.get("anyOf", [prop]):
        if choice.get("type") not in (None, "null"):
            return choice["type"], choice
    return prop.get("type", "string"), prop


def _bounded(kind: str, schema: dict, name: str) -> Any:
    """A converter that enforces the schema's limits, so argparse reports them (exit 2)."""
    convert = {"integer": int, "number": float}.get(kind, str)

    def parse(text: str) -> Any:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not a{'n' if kind == 'integer' else ''} {kind}"
            ) from None
        for key, ok, word in (
            ("minimum", lambda v, b: v >= b, ">="),
            ("maximum", lambda v, b: v <= b, "<="),
            ("exclusiveMinimum", lambda v, b: v > b, ">"),
            ("exclusiveMaximum", lambda v, b: v < b, "<"),
        ):
            if key in schema and not ok(value, schema[key]):
                raise argparse.ArgumentTypeError(f"must be {word} {schema[key]}, got {text}")
        return value

    parse.__name__ = kind  # argparse names the type in its messages
    return parse


def _json_or_text(text: str) -> Any:
    """A JSON object where one was written (``{"id": "key"}``), else the text (a path)."""
    if text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise argparse.ArgumentTypeError(f"not valid JSON: {exc}") from None
    return text


def _ordered(flow: Any) -> tuple[list[tuple[str, dict]], set[str]]:
    schema = flow.parameters.model_dump()
    props = sorted(schema["properties"].items(), key=lambda kv: kv[1].get("position", 0))
    return props, set(schema.get("required", []))


def positional(flow: Any) -> str | None:
    """The flow parameter given without an option name: its first required one."""
    props, required = _ordered(flow)
    return next((n for n, p in props if n in required and _kinds(p)[0] != "boolean"), None)


def add_parameters(parser: argparse.ArgumentParser, flow: Any) -> list[str]:
    """One argument per flow parameter; returns the parameter names in order."""
    props, required = _ordered(flow)
    first = positional(flow)
    names = []
    for name, prop in props:
        names.append(name)
        kind, inner = _kinds(prop)
        help_text = (prop.get("description") or "").replace("%", "%%")
        kwargs: dict[str, Any] = {"help": help_text}
        if name not in required:
            kwargs["default"] = argparse.SUPPRESS  # the flow's own default applies
            if "default" in prop and prop["default"] not in (None, [], ""):
                kwargs["help"] = f"{help_text} (default: {prop['default']})"
        if kind == "boolean":
            kwargs["action"] = argparse.BooleanOptionalAction
        elif kind == "array":
            kwargs["nargs"] = "+"
            kwargs["metavar"] = name.upper()
        elif kind == "object":
            kwargs["type"] = _json_or_text
            kwargs["metavar"] = "JSON|TEXT"
        else:
            kwargs["type"] = _bounded(kind, inner, name)
            if "enum" in inner:
                kwargs["choices"] = inner["enum"]
                kwargs["type"] = str
        if name == first:
            kwargs.pop("default", None)
            parser.add_argument(name, **kwargs)
            continue
        if name in required:
            kwargs["required"] = True
        parser.add_argument(option(name), dest=name, **kwargs)
    return names


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(
        prog="coldflow",
        description="Archive finished data from hot S3 storage into archive tiers and bring it "
        "back, verified. Each subcommand runs one coldflow flow.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    found = commands()
    for name, command in found.items():
        flow = load(command)
        text = re.split(r"\n\s*Args:", flow.description or "")[0].strip()
        first = " ".join(text.split("\n\n")[0].split())
        p = sub.add_parser(
            name,
            help=first.split(". ")[0].rstrip(".") + ".",
            description=text,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_parameters(p, flow)
        run = p.add_argument_group("how to run")
        run.add_argument(
            "--deployment",
            action="store_true",
            help=f"submit to the {command.deployment!r} deployment on the Prefect server "
            "instead of running here",
        )
        run.add_argument("--watch", action="store_true", help="with --deployment: follow the run")
        run.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser, found


# -- running -------------------------------------------------------------------------------


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run_here(flow: Any, params: dict[str, Any], as_json: bool) -> int:
    """Run the flow in this process and print its result; a dry run prints first what the
    flow found and estimated (its Markdown artifacts: the buckets' facts, the estimate)."""
    with Progress(sys.stderr.isatty() and not as_json):
        state = flow(**params, return_state=True)
    result = state.result()  # a failed run raises here, as calling the flow would
    if params.get("dry_run") and not as_json:
        print(artifacts_of(state.state_details.flow_run_id, "markdown"), end="\n\n")
    print(json.dumps(result, indent=2, default=str) if as_json else summary_table(result))
    return ITEMS_FAILED if failed(result) else DONE


def run_deployment_of(command: Command, flow: Any, params: dict[str, Any], watch: bool) -> int:
    from prefect.deployments import run_deployment

    name = f"{flow.name}/{command.deployment}"
    run = run_deployment(name, parameters=params, timeout=0)
    _say(f"submitted {name}: flow run {run.name} ({run.id})")
    if not watch:
        return DONE
    import asyncio

    from prefect.client.orchestration import get_client

    async def state_of() -> Any:
        async with get_client() as client:
            return await client.read_flow_run(run.id)

    seen = None
    while True:
        current = asyncio.run(state_of())
        state = current.state
        if state is not None and state.name != seen:
            seen = state.name
            _say(f"{run.name}: {state.name}")
        if state is not None and state.is_final():
            break
        time.sleep(2)
    print(artifacts_of(run.id, "table"))
    if state.is_completed():
        return DONE
    if state.is_cancelled():
        return INTERRUPTED
    _say(f"{run.name}: {state.message or state.name}")
    return ITEMS_FAILED


def bad_input_message(exc: BaseException) -> str | None:
    """The one line to show for bad input, or None when ``exc`` is not bad input."""
    from prefect.exceptions import ParameterTypeError
    from pydantic import ValidationError

    from tasks.core.errors import InputError

    if isinstance(exc, InputError):
        return str(exc)
    if isinstance(exc, ParameterTypeError):
        return " ".join(str(exc).split())
    if isinstance(exc, ValidationError):
        return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    return None


class _NoTracebackForExpected(logging.Filter):
    """On the terminal, errors coldflow raised on purpose (bad input, failed items) show as
    their message, without a traceback; the run's logs in the API keep it."""

    def filter(self, record: logging.LogRecord) -> bool:
        from prefect.exceptions import ParameterTypeError

        from tasks.core.errors import ColdflowError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, ColdflowError | ParameterTypeError):
            record.exc_info, record.exc_text = None, None
        return True


def _quiet_tracebacks() -> None:
    seen: set[int] = set()
    loggers = [logging.getLogger(), logging.getLogger("prefect")]
    loggers += [
        logging.getLogger(n)
        for n in list(logging.root.manager.loggerDict)
        if n.startswith("prefect")
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and id(handler) not in seen:
                seen.add(id(handler))
                handler.addFilter(_NoTracebackForExpected())


def failed_rows(exc: BaseException) -> Any:
    """The rows a run that failed some items carries (its summary, one item's row, or the
    sensor's counts), or None when ``exc`` is not such a failure."""
    from tasks.core.errors import ItemFailedError, ItemsFailedError, SensorTimeout

    if isinstance(exc, ItemsFailedError):
        return exc.summary
    if isinstance(exc, ItemFailedError):
        return [exc.row]
    if isinstance(exc, SensorTimeout):
        return exc.counts
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``coldflow`` console script."""
    os.environ.setdefault("DO_NOT_TRACK", "1")
    parser, found = build_parser()
    _quiet_tracebacks()
    args = vars(parser.parse_args(argv))
    name = args.pop("command")
    deployment, watch, as_json = args.pop("deployment"), args.pop("watch"), args.pop("json")
    command = found[name]
    flow = load(command)
    try:
        if deployment:
            return run_deployment_of(command, flow, args, watch)
        return run_here(flow, args, as_json)
    except KeyboardInterrupt:
        _say("interrupted")
        return INTERRUPTED
    except Exception as exc:
        message = bad_input_message(exc)
        if message is not None:
            _say(f"coldflow {name}: {message}")
            return BAD_INPUT
        rows = failed_rows(exc)
        if rows is None:
            raise
        print(summary_table(rows))
        _say(f"coldflow {name}: {exc}")
        return ITEMS_FAILED


if __name__ == "__main__":
    sys.exit(main())
