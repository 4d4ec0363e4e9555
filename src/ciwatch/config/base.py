"""The base of every settings model, and of every source kind's model
(docs/architecture.md#configuration).

Each provider module defines its source model (`GitLabSource` in `providers/gitlab.py`, ...) as
a subclass of `BaseSource`, so adding a CI system touches no configuration module: the
`sources:` union in `config/models.py` is built from the provider registry. These bases live
apart from `config/models.py` because that module imports the registry, and the provider
modules the registry imports need the bases first (one direction, no cycle).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar, NamedTuple, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import InitErrorDetails, PydanticCustomError

from ciwatch.config.durations import format_duration
from ciwatch.config.masking import (
    MASK,
    SECRET_FIELDS,
    URL_FIELDS,
    mask_url,
    sensitive_header,
)
from ciwatch.config.types import BaseUrl, Glob, PositiveDuration, Secret, SourceName

Loc = tuple[str | int, ...]


class ConfigModel(BaseModel):
    """Base of every settings model: frozen, unknown keys rejected, secrets masked in repr."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            if name in SECRET_FIELDS and value is not None:
                yield name, MASK
            elif name in URL_FIELDS and isinstance(value, str):
                yield name, getattr(type(self), "url_mask", mask_url)(value)
            elif name == "headers" and isinstance(value, Mapping):
                yield name, {k: MASK if sensitive_header(k) else v for k, v in value.items()}
            else:
                yield name, value


class Check(NamedTuple):
    """A problem found by a check over several fields of one model: where to report it (relative
    to the model), the message, and the fields it depends on."""

    loc: Loc
    message: str
    fields: tuple[str, ...]


def raise_problems(model: BaseModel, problems: Sequence[Check]) -> None:
    """Raise one ValidationError holding every problem, if there are any.

    The error type is `fields_check`; its context carries `depth` (the length of `loc`, so the
    loader can find the model's own location) and `fields`, so the loader can drop a problem
    that merely follows from a value it already reported (e.g. an unset `${VAR}`).
    """
    if problems:
        details = [
            InitErrorDetails(
                type=PydanticCustomError(
                    "fields_check",
                    "{message}",
                    {"message": check.message, "depth": len(check.loc), "fields": check.fields},
                ),
                loc=check.loc,
                input=None,
            )
            for check in problems
        ]
        raise ValidationError.from_exception_data(type(model).__name__, details)


def both_or_neither(model: BaseModel, first: str, second: str) -> list[Check]:
    one, two = getattr(model, first), getattr(model, second)
    if (one is None) == (two is None):
        return []
    present, absent = (first, second) if two is None else (second, first)
    message = f"{absent} is missing (set both {first} and {second}, or neither)"
    return [Check((present,), message, (first, second))]


class BaseSource(ConfigModel):
    """What every source kind has; `WATCH_FIELDS` are the lists naming what it watches."""

    WATCH_FIELDS: ClassVar[tuple[str, ...]] = ()

    name: SourceName
    type: str
    url: BaseUrl
    token: Secret = None
    webhook_secret: Secret = None
    interval: PositiveDuration = timedelta(seconds=60)
    active_interval: PositiveDuration = timedelta(seconds=15)
    requests_per_second: float = Field(10.0, gt=0)
    backfill: int = Field(50, ge=0, le=1000)
    refs: list[Glob] = []
    exclude_refs: list[Glob] = []
    exclude_projects: list[Glob] = []
    # Store webhook deliveries for projects, refs and workflows the source does not watch
    # (org-wide hooks); by default they are answered "ignored" (providers/watch.py).
    webhooks_accept_unwatched: bool = False
    verify_tls: bool = True
    # Read each finished changed run's test report (extra requests per such run, never per
    # unchanged poll; docs/performance.md).
    tests: bool = False

    @model_validator(mode="after")
    def _check(self) -> Self:
        problems: list[Check] = []
        if self.active_interval > self.interval:
            message = (
                f"{format_duration(self.active_interval)} is longer than interval "
                f"({format_duration(self.interval)}); it must be at most that"
            )
            problems.append(Check(("active_interval",), message, ("active_interval", "interval")))
        if not any(getattr(self, field) for field in self.WATCH_FIELDS):
            message = f"watches nothing: list at least one of {self._watch_hint()}"
            problems.append(Check((), message, self.WATCH_FIELDS))
        problems.extend(self._extra_problems())
        raise_problems(self, problems)
        return self

    def project_member(self, project: str) -> bool:
        """Whether the source lists `project` or finds it by discovery (before
        `exclude_projects`; `providers/watch.py`). By default: named exactly in one of the
        `WATCH_FIELDS`; a kind with groups or folders says how they contain projects."""
        return any(project in getattr(self, name) for name in self.WATCH_FIELDS)

    def workflow_globs(self) -> Sequence[str]:
        """The globs a run's workflow must match (GitHub's `workflows`); none by default."""
        return ()

    def _watch_hint(self) -> str:
        return ", ".join(self.WATCH_FIELDS[:-1]) + f" or {self.WATCH_FIELDS[-1]}"

    def _extra_problems(self) -> list[Check]:
        return []
