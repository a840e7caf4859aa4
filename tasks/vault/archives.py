"""Which vault archives go where: a mapping or CSV given by the user, or the vault's inventory.

Everything is checked before any job starts: ids look like archive ids, target keys are
safe relative keys and unique.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pandas as pd

from tasks.core.clients import read_options
from tasks.core.errors import InputError, UnsupportedKeyError
from tasks.formats.listing import check_key

#: Glacier archive ids are 138 URL-safe base64 characters; the loopback endpoint's are 32.
ARCHIVE_ID = re.compile(r"^[A-Za-z0-9_-]{32,138}$")
#: S3's longest key, in UTF-8 bytes.
MAX_KEY_BYTES = 1024


@dataclass(frozen=True)
class ArchiveSpec:
    """One archive to thaw: where it goes, and what the inventory knows of it."""

    archive_id: str
    key: str
    size: int | None = None
    tree_hash: str | None = None


def key_problem(key: str) -> str | None:
    """Why ``key`` can't be a target key, or None."""
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "starts with '/'"
    if len(key.encode()) > MAX_KEY_BYTES:
        return f"is longer than {MAX_KEY_BYTES} bytes"
    try:
        check_key(key)
    except UnsupportedKeyError as exc:
        return str(exc).split(";")[0].removeprefix(f"key {key!r} ")
    return None


def check_prefix(prefix: str) -> str:
    """A key prefix: relative, no '..' or '.' segments, no control characters."""
    if prefix and (key_problem(prefix + "x") is not None):
        raise InputError(f"prefix {prefix!r} {key_problem(prefix + 'x')}")
    return prefix


def read_archive_map(
    archives: dict[str, str] | str, prefix: str = "", credentials_block: str | None = None
) -> list[ArchiveSpec]:
    """Archives to thaw from a mapping (archive id → key) or a CSV (``archive_id,key``,
    local or ``s3://``); keys are under ``prefix``. Every problem is named in one error."""
    if isinstance(archives, str):
        try:
            frame = pd.read_csv(
                archives,
                dtype=str,
                keep_default_na=False,
                encoding="utf-8-sig",
                **read_options(archives, credentials_block),
            )
        except (OSError, ValueError, pd.errors.ParserError) as exc:
            raise InputError(f"archives file {archives}: can't be read ({exc})") from exc
        missing = {"archive_id", "key"} - set(frame.columns)
        if missing:
            raise InputError(
                f"archives file {archives}: missing column(s) {sorted(missing)}; "
                f"expected a header 'archive_id,key', found {list(frame.columns)}"
            )
        pairs = list(zip(frame["archive_id"], frame["key"], strict=True))
    else:
        pairs = list(archives.items())
    specs = [ArchiveSpec(str(a).strip(), prefix + str(k)) for a, k in pairs]
    check_specs(specs)
    return specs


def check_specs(specs: list[ArchiveSpec]) -> None:
    """Ids look like archive ids, keys are safe and unique; raises InputError naming all."""
    if not specs:
        raise InputError("no archives to thaw")
    problems: list[str] = []
    seen_ids: set[str] = set()
    seen_keys: dict[str, str] = {}
    for spec in specs:
        if not ARCHIVE_ID.match(spec.archive_id):
            problems.append(f"{spec.archive_id!r} is not a Glacier archive id")
        elif spec.archive_id in seen_ids:
            problems.append(f"archive {spec.archive_id} is listed more than once")
        seen_ids.add(spec.archive_id)
        why = key_problem(spec.key)
        if why:
            problems.append(f"key {spec.key!r} {why}")
        elif spec.key in seen_keys:
            problems.append(
                f"key {spec.key!r} is the target of {seen_keys[spec.key]} and {spec.archive_id}"
            )
        seen_keys.setdefault(spec.key, spec.archive_id)
    if problems:
        shown = "; ".join(problems[:10])
        more = f" (+{len(problems) - 10} more)" if len(problems) > 10 else ""
        raise InputError(f"{len(problems)} problem(s) with the archives: {shown}{more}")


def from_inventory(inventory: bytes | str | dict, prefix: str = "") -> list[ArchiveSpec]:
    """Every archive of a vault inventory; an archive's key is ``prefix + description`` when
    the description is a safe relative key, else ``prefix + archive id`` (also when two
    archives share a description)."""
    data = json.loads(inventory) if isinstance(inventory, bytes | str) else inventory
    rows = data.get("ArchiveList", [])
    counts: dict[str, int] = {}
    for row in rows:
        description = row.get("ArchiveDescription") or ""
        counts[description] = counts.get(description, 0) + 1
    specs = []
    for row in rows:
        description = row.get("ArchiveDescription") or ""
        usable = counts[description] == 1 and key_problem(prefix + description) is None
        specs.append(
            ArchiveSpec(
                row["ArchiveId"],
                prefix + (description if usable else row["ArchiveId"]),
                int(row["Size"]),
                row.get("SHA256TreeHash"),
            )
        )
    return specs
