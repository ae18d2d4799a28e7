"""graphile-worker's crontab format, read so the Crons page can show what the workers run.

A line is `MIN HOUR DOM MON DOW task ?options {payload}`; blank lines and lines starting with
`#` are skipped. The time fields take numbers, ranges `a-b`, `*` and `*/n`, comma-separated;
day of week 7 is Sunday. Options are a query string (`id`, `fill`, `max`, `queue`,
`priority`, `jobKey`, `jobKeyMode`), the payload a JSON5 object. Times are UTC, as the workers
evaluate them.

The format is checked here as strictly as graphile-worker 0.18.0 checks it (tests/
test_crons_interop.py compares the two on the same lines), because a worker refuses the whole
crontab over one bad line: the page must say which line, and why. The schedule itself (next and
previous due times, the words) is croniter's and cron-descriptor's job, not this module's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qsl

import json5
from cron_descriptor import Options, get_description
from croniter import CroniterError, croniter

# A crontab larger than this is not read: no real crontab comes near it.
MAX_CRONTAB_BYTES = 1_000_000
TEXT_SOURCE = "GRAPHILE_WORKER_CRONTAB text"
MAX_SHOWN_LINE = 300  # characters of a bad line kept for the page

_FIELD = r"([0-9*/,-]+)\s+"
_LINE = re.compile("^" + _FIELD * 5 + r"(.*)$")
_COMMAND = re.compile(r"^([_a-zA-Z][_a-zA-Z0-9:/_-]*)(?:\s+\?(\S+))?(?:\s+(\{.*\}))?$")
_NUMBER = re.compile(r"^[0-9]+$")
_RANGE = re.compile(r"^([0-9]+)-([0-9]+)$")
_WILDCARD = re.compile(r"^\*(?:/([0-9]+))?$")
_PERIOD = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

# (name, lowest, highest) per time field, in line order.
FIELDS = [
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day of month", 1, 31),
    ("month", 1, 12),
    ("day of week", 0, 6),
]


class CrontabError(ValueError):
    """A line graphile-worker would refuse; the message says why, for the page."""


@dataclass(frozen=True)
class CronOptions:
    fill: timedelta = timedelta(0)  # backfill period
    max_attempts: int | None = None
    queue: str | None = None
    priority: int | None = None
    job_key: str | None = None
    job_key_mode: str | None = None  # "replace" (the default with a job key) or "preserve_run_at"


@dataclass(frozen=True)
class CronItem:
    line_number: int
    text: str
    fields: tuple[str, str, str, str, str]  # as written
    values: tuple[tuple[int, ...], ...]  # each field's values, sorted, Sunday as 0
    task: str
    identifier: str
    options: CronOptions
    payload: dict | None

    @property
    def expression(self) -> str:
        """The schedule as written (five fields), for cron-descriptor."""
        return " ".join(self.fields)

    @property
    def normalised(self) -> str:
        """The schedule as croniter should read it to agree with the workers: a field holding
        every value becomes `*`, so day of month and day of week combine (OR) exactly when both
        are restricted, which is the workers' rule whatever the field's spelling."""
        parts = []
        for (_, low, high), values in zip(FIELDS, self.values, strict=True):
            every = len(values) == high - low + 1
            parts.append("*" if every else ",".join(str(v) for v in values))
        return " ".join(parts)

    def words(self) -> str:
        for expression in (self.expression, self.normalised):
            try:
                options = Options()
                options.use_24hour_time_format = True
                return get_description(expression, options)
            except Exception:  # a library's refusal: try the plain spelling
                continue
        return self.normalised

    def next_due(self, now: datetime) -> datetime | None:
        """The first due time after `now` (due times are whole minutes, UTC); None for a
        schedule that never comes (the workers accept `0 0 31 2 *` and never run it)."""
        try:
            return croniter(self.normalised, now).get_next(datetime)
        except CroniterError:
            return None

    def previous_due(self, now: datetime) -> datetime | None:
        """The latest due time at or before `now`; None when there is none."""
        start = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
        try:
            return croniter(self.normalised, start).get_prev(datetime)
        except CroniterError:
            return None


@dataclass(frozen=True)
class BadLine:
    line_number: int  # 0: the crontab as a whole (it could not be read)
    text: str
    reason: str


@dataclass(frozen=True)
class Crontab:
    source: str  # "file /etc/crontab" or "GRAPHILE_WORKER_CRONTAB text"
    items: list[CronItem] = field(default_factory=list)
    problems: list[BadLine] = field(default_factory=list)

    @property
    def refused_by_workers(self) -> bool:
        """graphile-worker stops at the first bad line: it runs none of these items."""
        return bool(self.problems)


def _values(text: str, name: str, low: int, high: int) -> tuple[int, ...]:
    found: set[int] = set()
    sunday_seven = name == "day of week"

    def add(number: int) -> None:
        if sunday_seven and number == 7:
            number = 0
        if not low <= number <= high:
            raise CrontabError(f"{name} value {number} is outside {low}-{high}.")
        found.add(number)

    for part in text.split(","):
        if _NUMBER.match(part):
            add(int(part))
        elif match := _RANGE.match(part):
            start, end = int(match[1]), int(match[2])
            if end <= start:
                raise CrontabError(f"{name} range {part} does not go upwards.")
            if end > high + 1:  # checked first: a huge range must not be walked
                raise CrontabError(f"{name} value {end} is outside {low}-{high}.")
            for number in range(start, end + 1):
                add(number)
        elif match := _WILDCARD.match(part):
            step = int(match[1]) if match[1] else 1
            if step < 1:
                raise CrontabError(f"{name} step in {part} must be at least 1.")
            found.update(range(low, high + 1, step))
        else:
            raise CrontabError(f"{name} part {part!r} is not a number, a range or a wildcard.")
    return tuple(sorted(found))


def _fill(text: str) -> timedelta:
    if not re.fullmatch(r"(?:[0-9]+[smhdw])+", text):
        raise CrontabError(f"fill={text} is not a period such as 1d or 4h30m.")
    seconds = sum(int(n) * _PERIOD[unit] for n, unit in re.findall(r"([0-9]+)([smhdw])", text))
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise CrontabError(f"fill={text} is too long a period.") from None


_OPTION_PATTERNS = {
    "id": r"[_a-zA-Z][-_a-zA-Z0-9]*",
    "fill": r".*",  # checked by _fill
    "max": r"[0-9]+",
    "queue": r"[-a-zA-Z0-9_:]+",
    "priority": r"-?[0-9]+",
    "jobKey": r"[^\n\r\u2028\u2029]*",
    "jobKeyMode": r"replace|preserve_run_at",
}


def _options(text: str | None) -> tuple[str | None, CronOptions]:
    """The `?key=value&...` part: the item's identifier (when given) and its options."""
    given: dict[str, str] = {}
    for key, value in parse_qsl(text or "", keep_blank_values=True):
        if key not in _OPTION_PATTERNS:
            raise CrontabError(
                f"unknown option {key[:40]!r}; the options are {', '.join(_OPTION_PATTERNS)}."
            )
        if key in given:
            raise CrontabError(f"option {key} is given more than once.")
        if not re.fullmatch(_OPTION_PATTERNS[key], value):
            raise CrontabError(f"option {key}={value[:40]!r} is not a valid value for it.")
        given[key] = value
    job_key = given.get("jobKey")
    options = CronOptions(
        fill=_fill(given["fill"]) if "fill" in given else timedelta(0),
        max_attempts=int(given["max"]) if "max" in given else None,
        queue=given.get("queue"),
        priority=int(given["priority"]) if "priority" in given else None,
        job_key=job_key,
        job_key_mode=given.get("jobKeyMode") or ("replace" if job_key else None),
    )
    return given.get("id"), options


def parse_line(text: str, line_number: int) -> CronItem:
    """One non-blank, non-comment line (already stripped); CrontabError says what is wrong."""
    match = _LINE.match(text)
    if not match:
        raise CrontabError(
            "not five time fields followed by a task (MIN HOUR DOM MON DOW task ?options "
            "{payload})."
        )
    fields = tuple(match[i] for i in range(1, 6))
    values = tuple(
        _values(written, name, low, high)
        for written, (name, low, high) in zip(fields, FIELDS, strict=True)
    )
    command = _COMMAND.match(match[6])
    if not command:
        raise CrontabError(
            "the command is not `task`, `task ?options`, `task {payload}` or "
            "`task ?options {payload}` (task names take letters, digits, _ : / -)."
        )
    task, options_text, payload_text = command[1], command[2], command[3]
    identifier, options = _options(options_text)
    payload = None
    if payload_text:
        try:
            payload = json5.loads(payload_text)
        except Exception as exc:  # json5 raises several types; all mean "bad"
            raise CrontabError(f"the payload is not valid JSON5: {str(exc)[:120]}") from None
        if not isinstance(payload, dict):
            raise CrontabError("the payload must be an object {...}.")
    return CronItem(
        line_number=line_number,
        text=text,
        fields=fields,
        values=values,
        task=task,
        identifier=identifier or task,
        options=options,
        payload=payload,
    )


def _shown(line: str) -> str:
    """A bad line as the page shows it: its payload elided, since a crontab's payloads may hold
    what REDACT_PAYLOAD_PATHS hides in job payloads."""
    brace = line.find("{")
    if brace != -1:
        line = line[:brace] + "{…}"
    return line[:MAX_SHOWN_LINE]


def parse_crontab(text: str, source: str = TEXT_SOURCE) -> Crontab:
    """Every line: items, and the lines the workers would refuse with the reason. Never raises."""
    crontab = Crontab(source=source)
    seen: dict[str, int] = {}
    # Lines end at \n or \r\n only, as the workers split them (not at every Unicode break).
    for number, raw in enumerate(re.split(r"\r?\n", text), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        try:
            item = parse_line(line, number)
        except CrontabError as exc:
            crontab.problems.append(BadLine(number, _shown(line), str(exc)))
            continue
        if item.identifier in seen:
            crontab.problems.append(
                BadLine(
                    number,
                    _shown(line),
                    f"identifier {item.identifier!r} is already used on line "
                    f"{seen[item.identifier]}: give one of them ?id=...",
                )
            )
            continue
        seen[item.identifier] = number
        crontab.items.append(item)
    return crontab


def load_crontab(setting: str) -> Crontab | None:
    """GRAPHILE_WORKER_CRONTAB: None when unset; a value without whitespace is a file path
    (a crontab line always has spaces), anything else the crontab text. Never raises."""
    if not setting.strip():
        return None
    if re.search(r"\s", setting.strip()):
        return parse_crontab(setting)
    path = Path(setting.strip())
    source = f"file {path}"
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_CRONTAB_BYTES + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL in the path
        reason = f"cannot read it: {getattr(exc, 'strerror', None) or exc}"
        return Crontab(source, problems=[BadLine(0, str(path)[:MAX_SHOWN_LINE], reason)])
    if len(data) > MAX_CRONTAB_BYTES:
        reason = f"larger than {MAX_CRONTAB_BYTES:,} bytes: not read."
        return Crontab(source, problems=[BadLine(0, str(path), reason)])
    return parse_crontab(data.decode("utf-8", errors="replace"), source)
