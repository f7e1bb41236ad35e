from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

from ninja import Field, Schema
from pydantic import AfterValidator

from postroom.lib.apiinput import InputSchema


def _single(value: Any) -> Any:
    if isinstance(value, list | dict):
        raise ValueError("a single value: text, a number or true/false.")
    return value


# A step's config holds single values only (automations.steps): a list or an object is refused
# here, naming its key, rather than reaching the checks of each kind.
ConfigValue = Annotated[Any, AfterValidator(_single)]


class NewStepIn(InputSchema):
    kind: str
    config: dict[str, ConfigValue] = {}


class StepIn(NewStepIn):
    # Insert after this step number (0: first); none: at the end.
    after: int | None = None


class StepPatch(InputSchema):
    config: dict[str, ConfigValue]


class StepMove(InputSchema):
    direction: Literal["up", "down"]


class AutomationIn(InputSchema):
    name: str
    trigger: str = "event"
    trigger_event: str = ""
    trigger_tag: str = ""
    trigger_segment: str | None = None  # a segment's id
    repeat: str = "once"
    cancel_event: str = ""
    sender: str | None = None  # a sender's id; none: the project's default sender
    steps: list[NewStepIn] = []
    enabled: bool = False


class AutomationPatch(InputSchema):
    name: str | None = None
    trigger: str | None = None
    trigger_event: str | None = None
    trigger_tag: str | None = None
    trigger_segment: str | None = None
    repeat: str | None = None
    cancel_event: str | None = None
    sender: str | None = None
    enabled: bool | None = None


class StepOut(Schema):
    number: int
    kind: str
    config: dict[str, Any]
    description: str
    waiting: int


class RunCounts(Schema):
    waiting: int
    done: int
    cancelled: int
    failed: int


class AutomationOut(Schema):
    id: str
    name: str
    trigger: str
    trigger_event: str
    trigger_tag: str
    trigger_segment: str | None
    trigger_description: str
    repeat: str
    cancel_event: str
    sender: str | None
    enabled: bool
    steps: list[StepOut]
    runs: RunCounts
    created_at: dt.datetime
    updated_at: dt.datetime


class AutomationDeleted(Schema):
    success: bool
    id: str


class RunOut(Schema):
    id: str
    contact: str
    email: str
    state: str
    step: int | None
    step_description: str
    next_run_at: dt.datetime | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    last_error: str
    trigger: dict[str, Any]


class RunPage(Schema):
    items: list[RunOut]
    next_cursor: str | None


class RunQuery(InputSchema):
    limit: int = Field(50, ge=1, le=100)
    cursor: str | None = None
    state: str = ""
