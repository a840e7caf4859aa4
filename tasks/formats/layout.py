"""Archive layouts: where a plate's objects live and where its archive goes.

A layout is data, not code. The default, ``cellpainting``, is the established
layout that existing archives were made with; keys, tar member paths and
sidecar names produced here must stay identical to it (see docs/layout.md).
Other labs describe their prefixes and bundles in a JSON file of the same shape
and pass its path as ``layout``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from tasks.core.errors import InputError

Compression = Literal["gzip", "zstd"]

#: Tarball suffix per compression; sidecars and listings are the same for both.
TARBALL_SUFFIX: dict[str, str] = {"gzip": ".tar.gz", "zstd": ".tar.zst"}

_FIELDS = ("project_name", "batch_id", "plate_id", "plate_id_full")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_name(what: str, value: str) -> str:
    """Refuse a name that would escape or confuse a key prefix: '/', '..', control characters."""
    if not isinstance(value, str) or not value:
        raise InputError(f"{what} is empty")
    if value != value.strip():
        raise InputError(f"{what} {value!r} has leading or trailing white space")
    if "/" in value or "\\" in value:
        raise InputError(f"{what} {value!r} contains a slash")
    if ".." in value:
        raise InputError(f"{what} {value!r} contains '..'")
    if _CONTROL.search(value):
        raise InputError(f"{what} {value!r} contains a control character")
    return value


class Bundle(BaseModel):
    """One tarball of a plate: a name and the source prefixes it holds."""

    name: str = Field(description="Bundle name, part of the tarball's file name.")
    prefixes: list[str] = Field(
        description="Source prefix templates with {project_name}, {batch_id}, {plate_id}, "
        "{plate_id_full}; each ends with '/'."
    )

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        try:
            return check_name("bundle name", value)
        except InputError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("prefixes")
    @classmethod
    def _prefixes_end_with_slash(cls, value: list[str]) -> list[str]:
        for p in value:
            if not p.endswith("/"):
                raise ValueError(f"prefix template {p!r} must end with '/'")
        return value


class Layout(BaseModel):
    """Where a plate's source objects live and how its archive is named."""

    name: str
    source_root: str = Field(
        "projects/",
        description="Leading part of every source key that tar members and listings leave out.",
    )
    tag: str = "{project_name}_{batch_id}_{plate_id}"
    bundles: list[Bundle]
    cold_prefix: str = "imaging_analysis/{project_name}/plates/"
    backup_prefix: str = "projects/{project_name}/workspace/backup/"

    def for_plate(
        self, project_name: str, batch_id: str, plate_id: str, plate_id_full: str
    ) -> PlateLayout:
        """Resolve every key of one plate."""
        values = {
            "project_name": check_name("project_name", project_name),
            "batch_id": check_name("batch_id", batch_id),
            "plate_id": check_name("plate_id", plate_id),
            "plate_id_full": check_name("plate_id_full", plate_id_full),
        }
        return PlateLayout(
            layout=self,
            plate_id=plate_id,
            tag=self.tag.format(**values),
            bundles={b.name: tuple(p.format(**values) for p in b.prefixes) for b in self.bundles},
            cold_prefix=self.cold_prefix.format(**values),
            backup_prefix=self.backup_prefix.format(**values),
        )


@dataclass(frozen=True)
class PlateLayout:
    """Every key of one plate's archive, resolved from a layout."""

    layout: Layout
    plate_id: str
    tag: str
    bundles: dict[str, tuple[str, ...]]
    cold_prefix: str
    backup_prefix: str

    @property
    def prefixes(self) -> list[str]:
        """All source prefixes, bundle by bundle."""
        return [p for ps in self.bundles.values() for p in ps]

    def trimmed(self, key: str) -> str:
        """The key as listings show it: without the source root."""
        root = self.layout.source_root
        return key[len(root) :] if key.startswith(root) else key

    def member_name(self, key: str) -> str:
        """The tar member path of a source key: ``{tag}/{key without the source root}``."""
        return f"{self.tag}/{self.trimmed(key)}"

    def key_of_member(self, member: str) -> str | None:
        """The source key a member path stands for, or None if it isn't under ``{tag}/``."""
        head = f"{self.tag}/"
        if not member.startswith(head):
            return None
        return self.layout.source_root + member[len(head) :]

    def bundle_of(self, key: str) -> str | None:
        """Which bundle a source key belongs to, if any."""
        for name, prefixes in self.bundles.items():
            if any(key.startswith(p) for p in prefixes):
                return name
        return None

    # cold bucket
    def tarball(self, bundle: str, compression: str = "gzip") -> str:
        return f"{self.cold_prefix}{self.tag}_{bundle}{TARBALL_SUFFIX[compression]}"

    def md5_sidecar(self, bundle: str) -> str:
        return f"{self.cold_prefix}{self.tag}_{bundle}.md5"

    def etag_sidecar(self, bundle: str) -> str:
        return f"{self.cold_prefix}{self.tag}_{bundle}.etag"

    @property
    def untrimmed_listing(self) -> str:
        return f"{self.cold_prefix}{self.tag}_file_listing_untrimmed_s3.txt"

    # live bucket
    @property
    def s3_listing(self) -> str:
        return f"{self.backup_prefix}{self.tag}_file_listing_s3.txt"

    @property
    def tar_listing(self) -> str:
        return f"{self.backup_prefix}{self.tag}_file_listing_tar.txt"

    @property
    def delete_script(self) -> str:
        return f"{self.backup_prefix}{self.tag}_delete_s3.sh"


CELLPAINTING = Layout(
    name="cellpainting",
    bundles=[
        Bundle(
            name="images_illum_analysis",
            prefixes=[
                "projects/{project_name}/{batch_id}/images/{plate_id_full}/",
                "projects/{project_name}/{batch_id}/illum/{plate_id}/",
                "projects/{project_name}/workspace/analysis/{batch_id}/{plate_id}/",
            ],
        ),
        Bundle(
            name="backend",
            prefixes=["projects/{project_name}/workspace/backend/{batch_id}/{plate_id}/"],
        ),
    ],
)

LAYOUTS: dict[str, Layout] = {CELLPAINTING.name: CELLPAINTING}


def resolve_layout(layout: str | Layout) -> Layout:
    """A layout by name (``cellpainting``), from a JSON file path, or as given."""
    if isinstance(layout, Layout):
        return layout
    if layout in LAYOUTS:
        return LAYOUTS[layout]
    path = Path(layout)
    if path.suffix == ".json" and path.is_file():
        try:
            return Layout.model_validate(json.loads(path.read_text()))
        except ValueError as exc:
            raise InputError(f"layout file {layout}: {exc}") from exc
    raise InputError(
        f"unknown layout {layout!r}: use one of {sorted(LAYOUTS)} or the path of a JSON layout file"
    )
