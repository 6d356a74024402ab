"""The remediation policy file: YAML or JSON, read strictly into `core.plan.RemediationPolicy`.

Every field is checked at the boundary, and an unknown field is an error: a typo must not
silently change what remediation may do. Every error is one line naming the file, the field
(e.g. `rings[1].soak`) and why.

Values are written the same way in YAML and JSON:
- durations: ISO 8601 with days, hours, minutes and seconds (`P3D`, `PT2H`, `PT1H30M`), or the
  short form of whole numbers with units d, h, m, s (`3d`, `2h`, `1h30m`);
- times of day: `HH:MM`, 24-hour, read in the window's `time_zone` (an IANA name);
- instants (`expires`): ISO 8601; without an offset, UTC; a date alone is its 00:00 UTC;
- KBs: `KB5062557`, or its digits.
YAML is read with a safe loader that keeps times and dates as text (YAML 1.1 would read an
unquoted 22:00 as the number 1320) and refuses anchors, aliases and repeated keys.
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from hotpatch.core.plan import (
    MAXIMUM_DURATION_LIMIT,
    MINIMUM_INSTALL_TIME,
    BlockedKb,
    Mode,
    RemediationPolicy,
    RingPolicy,
    TaggedWindow,
    Window,
    kb_form,
)
from hotpatch.errors import ConfigurationError

#: A policy is a few kilobytes; anything near this is not one.
MAX_BYTES = 1024 * 1024
#: The policy's own nesting is four levels (rings -> ring -> window -> field).
MAX_DEPTH = 8

# -- values ---------------------------------------------------------------------------------------

_ISO_DURATION = re.compile(
    r"^P(?!$)(?:(?P<d>\d+)D)?(?:T(?=\d)(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?(?:(?P<s>\d+)S)?)?$",
    re.IGNORECASE,
)
_SHORT_DURATION = re.compile(
    r"^(?=\d)(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$"
)
_CLOCK = re.compile(r"^(?P<h>\d{1,2}):(?P<m>\d{2})$")


def parse_duration(value: object) -> timedelta:
    """`P3D`, `PT2H`, `PT1H30M`, `3d`, `2h`, `1h30m` -> a timedelta."""
    if isinstance(value, timedelta):
        return value
    if not isinstance(value, str):
        raise ValueError(f"a duration is text such as PT2H or 2h, got {value!r}")
    text = value.strip()
    match = _ISO_DURATION.match(text) or _SHORT_DURATION.match(text.lower())
    if match is None:
        raise ValueError(
            f"{value!r} is not a duration: write ISO 8601 (P3D, PT2H, PT1H30M) or 3d, 2h, 1h30m"
        )
    parts = {unit: int(match.group(unit) or 0) for unit in "dhms"}
    return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def _clock(value: object) -> time:
    if isinstance(value, time):
        return value
    match = _CLOCK.match(value.strip()) if isinstance(value, str) else None
    if match is None or int(match.group("h")) > 23 or int(match.group("m")) > 59:
        raise ValueError(f"a time of day is written HH:MM (24-hour), got {value!r}")
    return time(int(match.group("h")), int(match.group("m")))


def _zone_name(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"a time zone is an IANA name such as Europe/London, got {value!r}")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {value!r} (an IANA name such as Europe/London)"
        ) from None
    return value


def _kb(value: object) -> str:
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    found = kb_form(text) if isinstance(text, str) else None
    if found is None:
        raise ValueError(f"a KB is written KB5062557 or 5062557, got {value!r}")
    return found


def _instant(value: object) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"an instant is ISO 8601 such as 2026-09-01T00:00Z or 2026-09-01, got {value!r}"
            ) from None
    else:
        raise ValueError(f"an instant is ISO 8601 text, got {value!r}")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected non-empty text, got {value!r}")
    return value.strip()


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Clock = Annotated[time, BeforeValidator(_clock)]
Zone = Annotated[str, BeforeValidator(_zone_name)]
Kb = Annotated[str, BeforeValidator(_kb)]
Instant = Annotated[datetime, BeforeValidator(_instant)]
Text = Annotated[str, BeforeValidator(_text)]
Fraction = Annotated[float, Field(ge=0.0, le=1.0, strict=True)]
Count = Annotated[StrictInt, Field(ge=0)]

# -- the file's shape -----------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WindowFile(_Strict):
    offset_days: Annotated[StrictInt, Field(ge=0, le=27)]
    start: Clock
    time_zone: Zone
    duration: Duration

    @model_validator(mode="after")
    def _duration_fits(self) -> WindowFile:
        if not timedelta(0) < self.duration < MAXIMUM_DURATION_LIMIT:
            raise _FieldError(
                "duration", "must be more than 0 and less than 3h55m (Azure's longest install)"
            )
        return self

    def to_core(self) -> Window:
        return Window(self.offset_days, self.start, self.time_zone, self.duration)


class TaggedWindowFile(_Strict):
    tag: Text
    value: Text
    window: WindowFile

    def to_core(self) -> TaggedWindow:
        return TaggedWindow(self.tag, self.value, self.window.to_core())


class RingFile(_Strict):
    name: Text
    soak: Duration = timedelta(days=3)
    error_budget: Fraction = 0.05
    max_concurrent: Count = 50
    max_per_run: Count = 100
    window: WindowFile | None = None

    def to_core(self) -> RingPolicy:
        return RingPolicy(
            name=self.name,
            soak=self.soak,
            error_budget=float(self.error_budget),
            max_concurrent=self.max_concurrent,
            max_per_run=self.max_per_run,
            window=self.window.to_core() if self.window else None,
        )


class BlockedKbFile(_Strict):
    kb: Kb
    reason: Text
    expires: Instant | None = None

    def to_core(self) -> BlockedKb:
        return BlockedKb(self.kb, self.reason, self.expires)


class PolicyFile(_Strict):
    mode: Literal["report", "assess", "remediate"] = "report"
    rings: list[RingFile] = Field(default_factory=list)
    blocked_kbs: list[BlockedKbFile] = Field(default_factory=list)
    default_window: WindowFile | None = None
    windows: list[TaggedWindowFile] = Field(default_factory=list)
    max_starts_per_run: Count = 200
    exclude_tag: Text = "hotpatch-exclude"
    maximum_duration: Duration = timedelta(hours=2)
    assess_anytime: StrictBool = True
    install_pending: StrictBool = False

    @model_validator(mode="after")
    def _consistent(self) -> PolicyFile:
        seen: set[str] = set()
        for index, ring in enumerate(self.rings):
            folded = ring.name.casefold()
            if folded in seen:
                raise _FieldError(
                    f"rings[{index}].name",
                    f"ring {ring.name!r} is listed twice (names compare without regard to case)",
                )
            seen.add(folded)
        if not MINIMUM_INSTALL_TIME <= self.maximum_duration < MAXIMUM_DURATION_LIMIT:
            raise _FieldError(
                "maximum_duration",
                "must be at least 15 minutes and less than 3h55m (Azure's longest install)",
            )
        return self

    def to_core(self) -> RemediationPolicy:
        return RemediationPolicy(
            mode=Mode(self.mode),
            rings=tuple(ring.to_core() for ring in self.rings),
            blocked_kbs=tuple(block.to_core() for block in self.blocked_kbs),
            default_window=self.default_window.to_core() if self.default_window else None,
            windows=tuple(window.to_core() for window in self.windows),
            max_starts_per_run=self.max_starts_per_run,
            exclude_tag=self.exclude_tag,
            maximum_duration=self.maximum_duration,
            assess_anytime=self.assess_anytime,
            install_pending=self.install_pending,
        )


class _FieldError(ValueError):
    """A check across fields, naming the field (relative to the model it is raised in)."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")


# -- reading --------------------------------------------------------------------------------------


def load_policy(path: Path | None) -> RemediationPolicy:
    """The policy in `path` (YAML, or JSON by its `.json` suffix or its leading `{`); None: the
    defaults, which start nothing (mode report, no rings)."""
    if path is None:
        return RemediationPolicy()
    data = _read(path)
    try:
        parsed = PolicyFile.model_validate(data)
    except ValidationError as error:
        raise ConfigurationError(_one_line(path, error)) from None
    try:
        return parsed.to_core()
    except ValueError as error:  # the core's own checks; the file's come first
        raise ConfigurationError(f"{path}: (policy): {error}") from None


def _read(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigurationError(
            f"{path}: (file): cannot read the policy file: {error.strerror or error}"
        ) from None
    if len(raw) > MAX_BYTES:
        raise ConfigurationError(f"{path}: (file): larger than {MAX_BYTES} bytes: not a policy")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path}: (file): not UTF-8 text") from None
    if path.suffix.casefold() == ".json" or text.lstrip().startswith("{"):
        data = _json(path, text)
    else:
        data = _yaml(path, text)
    if data is None:
        raise ConfigurationError(f"{path}: (file): empty: write at least `mode: report`")
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path}: (file): the policy must be a mapping of fields, not a {type(data).__name__}"
        )
    _check_depth(path, data)
    return data


def _json(path: Path, text: str) -> object:
    def no_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        for key, value in pairs:
            if key in found:
                raise ValueError(f"the key {key!r} is repeated")
            found[key] = value
        return found

    try:
        return json.loads(text, object_pairs_hook=no_repeats)
    except json.JSONDecodeError as error:
        raise ConfigurationError(
            f"{path}: line {error.lineno}, column {error.colno}: not JSON: {error.msg}"
        ) from None
    except ValueError as error:
        raise ConfigurationError(f"{path}: (file): {error}") from None
    except RecursionError:
        raise ConfigurationError(f"{path}: (file): nested too deep: not a policy") from None


class _PolicyLoader(yaml.SafeLoader):
    """Safe YAML that keeps times and dates as text and refuses repeated keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is repeated", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 reads `22:00` as the sexagesimal number 1320 and `2026-09-01` as a date: keep plain
# decimal numbers only, and everything else as text, which the fields parse like JSON's.
_TEXT_LIKE = {"tag:yaml.org,2002:int", "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp"}
_PolicyLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag not in _TEXT_LIKE]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(?:0|[1-9][0-9]*)$"), list("-+0123456789")
)
_PolicyLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$"),
    list("-+.0123456789"),
)


def _yaml(path: Path, text: str) -> object:
    try:
        depth = 0
        for event in yaml.parse(text, Loader=_PolicyLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise ConfigurationError(
                    f"{path}: {_at(event.start_mark)}: anchors and aliases are not accepted "
                    "in a policy: write each value out"
                )
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise ConfigurationError(
                        f"{path}: {_at(event.start_mark)}: nested deeper than "
                        f"{MAX_DEPTH} levels: not a policy"
                    )
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
        return yaml.load(text, Loader=_PolicyLoader)  # a SafeLoader
    except yaml.MarkedYAMLError as error:
        where = _at(error.problem_mark or error.context_mark)
        problem = " ".join(str(error.problem or error.context or "not YAML").split())
        raise ConfigurationError(f"{path}: {where}: not YAML: {problem}") from None
    except yaml.YAMLError as error:
        raise ConfigurationError(
            f"{path}: (file): not YAML: {' '.join(str(error).split())}"
        ) from None


class _Mark(Protocol):
    @property
    def line(self) -> int: ...
    @property
    def column(self) -> int: ...


def _at(mark: _Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "(file)"


def _check_depth(path: Path, data: object) -> None:
    """JSON's nesting (YAML's is checked as it is parsed), without recursion."""
    stack: list[tuple[object, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise ConfigurationError(
                    f"{path}: (file): nested deeper than {MAX_DEPTH} levels: not a policy"
                )
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)


# -- errors ---------------------------------------------------------------------------------------


def _one_line(path: Path, error: ValidationError) -> str:
    problems = error.errors(include_url=False)
    first = problems[0]
    where, why = _describe(first)
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    return " ".join(f"{path}: {where}: {why}{more}".split())


def _describe(problem: ErrorDetails) -> tuple[str, str]:
    location = [part for part in problem["loc"] if not _is_union_branch(part)]
    where = _location(location)
    kind = problem["type"]
    message = problem["msg"].removeprefix("Value error, ")
    if kind == "value_error":
        cause = problem.get("ctx", {}).get("error")
        if isinstance(cause, _FieldError):
            field, _, why = str(cause).partition(": ")
            inner = f"{where}.{field}" if where else field
            return inner, why
    if kind == "extra_forbidden":
        return where, _unknown_field(location)
    if kind == "missing":
        return where, "required, and missing"
    if kind == "literal_error":
        return where, f"{message} (got {problem.get('input')!r})"
    return where or "(policy)", message


def _is_union_branch(part: object) -> bool:
    # pydantic names the branch of an optional model in the location (e.g. "WindowFile").
    return isinstance(part, str) and part[:1].isupper()


def _location(parts: list[int | str]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


_MODELS: dict[str, type[BaseModel]] = {
    "rings": RingFile,
    "blocked_kbs": BlockedKbFile,
    "windows": TaggedWindowFile,
    "default_window": WindowFile,
    "window": WindowFile,
}


def _unknown_field(location: list[int | str]) -> str:
    """'unknown field', with the fields its place knows and the nearest one to the typo."""
    *parents, name = location
    model: type[BaseModel] = PolicyFile
    for part in parents:
        if isinstance(part, str):
            model = _MODELS.get(part, model)
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown field{hint} (known here: {', '.join(known)})"
