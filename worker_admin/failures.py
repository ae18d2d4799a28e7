"""Failures: failed and retrying jobs grouped by task and a normalised error message.

Thousands of jobs failing for one reason should read as one line, not thousands. The grouping
happens in PostgreSQL: `normalised_error_expression()` folds the parts of an error message that
vary from job to job (numbers, ids, quoted values, addresses) into placeholders, and the page
groups by task and that expression. `normalise_error()` is its Python twin, built from the same
rules, so tests can check that both engines agree on the same samples.

The rules, applied in order to `last_error`:

1. drop leading white space, then keep the first line only, up to the first CR or LF (a Node
   stack's first line is "Error: message"; the frames below it vary with the code, not the
   failure);
2. URLs: user info becomes `<user>@`, the query string and fragment become `?…`
   (scheme, host and path stay; the numbers and ids in them fall to the rules below);
3. e-mail addresses become `<email>`;
4. double-quoted values become `"…"`, single-quoted ones `'…'` (a b/r/u/f prefix goes with
   them: b'…' gives '…'; an apostrophe inside a word, as in "can't", opens no quote);
5. UUIDs become `<uuid>`;
6. hex ids become `<id>`: a digit, x and hex digits (`0x7ffd5e8c`; also `2x3`), and runs of 8
   or more hex digits that hold at least one digit and one letter a–f (`pool-7f3a9c2e1b` gives
   `pool-<id>`);
7. other opaque ids, runs of 16 or more letters and digits mixing both (ULIDs, API tokens),
   also become `<id>`;
8. every other number, dotted ones included (10.0.3.17, 1.5), becomes `<n>`, also inside a
   word (user4821 gives user<n>, S3Error gives S<n>Error: ids glued to words are the commoner
   case);
9. runs of spaces and tabs become one space; the ends are trimmed; at most 500 characters
   are kept (so a link to the group stays a sane length);
10. an empty or missing error becomes `<no error>`, so such jobs form a group of their own that
    the jobs list can filter on like any other.

A hex id that happens to be all digits becomes `<n>`, not `<id>`; with 10-character ids that
splits about 1 % of a group into a second group, which is the price of never renaming numbers.

Speed. The regular expressions cost tens of microseconds per row in PostgreSQL, far more than
the grouping. No rule tells one digit from another (rule 6 says "a digit, x", not "0x"), so
replacing every digit by 0 first changes no result; the page uses that to collapse lines that
differ only in their digits, and in their stack frames, before it runs any regular expression
(see `_grouped_sql`). That replacement is nine `replace()` calls rather than one `translate()`:
on UTF-8 text `translate` looks every character up in its map, about five times slower over the
10,000 lines the page reads on a large table (40 ms of a 110 ms query at 10M jobs). Patterns
avoid capture groups where they can: PostgreSQL matches those several times slower.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from hashlib import blake2b

from django.db import OperationalError, connections, transaction
from django.db.models import (
    Count,
    Expression,
    F,
    Func,
    Max,
    Min,
    Q,
    QuerySet,
    TextField,
    Value,
)
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce, Left, Length, NullIf, Trim

from worker_admin.models import Job
from worker_admin.states import RETRYING, STATE_PREDICATES, JobState
from worker_admin.stats import database_now, is_large

MAX_MESSAGE_LENGTH = 500
NEWEST_FAILURES = 10_000  # on a large table, the failing jobs grouped (the newest ones)
NO_ERROR = "<no error>"
EXAMPLE_LENGTH = 8000  # characters of a group's example error, by default (the API's)
EXCERPT_LENGTH = 600  # the page's: the start of the error; the job's page has all of it

_SPACE = r" \t\r\n\f\v"
_LEADING_SPACE = " \t\r\n\f\v"  # the same characters, for ltrim and str.lstrip
_ALNUM = "0-9A-Za-z"
_HEX = "0-9a-fA-F"
_WORD_START = f"(?<![{_ALNUM}])"
_WORD_END = f"(?![{_ALNUM}])"
_URL_SCHEME = "[A-Za-z][A-Za-z0-9+.-]*://"

# (pattern, replacement), applied to the first line: both engines read them alike. Only ASCII
# classes (no \d, \w, \b, which are Unicode-aware in Python and not in PostgreSQL), no `$`
# (Python lets it match before a final newline), backreferences as \1 (both engines' syntax),
# digits only as the class [0-9]. PostgreSQL runs each with the 'g' flag.
RULES: tuple[tuple[str, str], ...] = (
    (f"://[^/{_SPACE}@'\"]*@", "://<user>@"),
    (f"({_URL_SCHEME}[^?#{_SPACE}'\"]*)[?#][^{_SPACE}'\"]*", r"\1?…"),
    ("[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:[.][A-Za-z0-9-]+)+", "<email>"),
    ('"[^"]*"', '"…"'),
    (f"{_WORD_START}[bBrRuUfF]?'[^']*'", "'…'"),
    (
        f"{_WORD_START}[{_HEX}]{{8}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{4}}-[{_HEX}]{{12}}"
        f"{_WORD_END}",
        "<uuid>",
    ),
    (f"{_WORD_START}[0-9][xX][{_HEX}]+", "<id>"),
    (
        f"{_WORD_START}(?=[{_HEX}]*[0-9])(?=[0-9]*[a-fA-F])[{_HEX}]{{8,}}{_WORD_END}",
        "<id>",
    ),
    (
        f"{_WORD_START}(?=[A-Za-z]*[0-9])(?=[0-9]*[A-Za-z])[{_ALNUM}]{{16,}}{_WORD_END}",
        "<id>",
    ),
    ("[0-9]+(?:[.][0-9]+)*", "<n>"),
    # Runs of two or more, and lone tabs: a single space, the common case, is left alone
    # (several times faster in PostgreSQL than rewriting every space).
    (r"[ \t\f\v]{2,}|[\t\f\v]", " "),
)

_COMPILED = tuple((re.compile(pattern), repl) for pattern, repl in RULES)
_NONZERO_DIGITS, _ZEROS = "123456789", "000000000"
DIGITS_TO_ZERO = str.maketrans(_NONZERO_DIGITS, _ZEROS)


def first_line(text: str | None) -> str:
    """Rule 1, the Python twin of `first_line_expression()`."""
    return (text or "").lstrip(_LEADING_SPACE).split("\n", 1)[0].split("\r", 1)[0]


def normalise_error(text: str | None) -> str:
    """The Python twin of `normalised_error_expression()`: the same rules, the same result."""
    line = first_line(text)
    for pattern, replacement in _COMPILED:
        line = pattern.sub(replacement, line)
    return line.strip(" ")[:MAX_MESSAGE_LENGTH] or NO_ERROR


class RegexpReplace(Func):
    function = "regexp_replace"
    output_field = TextField()

    def __init__(self, expression, pattern: str, replacement: str, **extra):
        # Patterns and replacements are constants of this module, sent as bound parameters.
        super().__init__(expression, Value(pattern), Value(replacement), Value("g"), **extra)


class SplitPart(Func):
    function = "split_part"
    output_field = TextField()


def first_line_expression(field: str = "last_error") -> Expression:
    """Rule 1 in SQL, with ltrim and split_part: no regular expression for the step every row
    needs."""
    trimmed = Func(F(field), Value(_LEADING_SPACE), function="ltrim", output_field=TextField())
    return SplitPart(SplitPart(trimmed, Value("\n"), Value(1)), Value("\r"), Value(1))


def normalised_line_expression(line: Expression) -> Expression:
    """Rules 2 to 10 in SQL, over an expression that is already a first line."""
    for pattern, replacement in RULES:
        line = RegexpReplace(line, pattern, replacement)
    trimmed = Left(Trim(line), MAX_MESSAGE_LENGTH)
    return Coalesce(NullIf(trimmed, Value("")), Value(NO_ERROR), output_field=TextField())


def normalised_error_expression(field: str = "last_error") -> Expression:
    """The normalised error message of a job, as a Django expression over `last_error`.

    It is the SQL side of `normalise_error()` (see the module docstring for the rules) and the
    key the failures page groups by. The jobs list filters on it for its `error` query
    parameter, which the failures page's links carry ("normalised error equals"):

        jobs.alias(normalised_error=normalised_error_expression())
            .filter(normalised_error=request.GET["error"])

    The value to compare with is the text as the failures page shows it (`<n>`, `'…'`, …),
    and `<no error>` for jobs without an error message. Nothing is indexed on `last_error`,
    and the expression costs tens of microseconds per row: combine it with a state or task
    filter so it runs on the failures only. `field` names the column for querysets that reach
    it through a relation.
    """
    return normalised_line_expression(first_line_expression(field))


QUERY_CANCELED = "57014"  # SQLSTATE of a statement cut by statement_timeout


class FailureGroupingTooSlow(RuntimeError):
    """The grouping ran into the console's statement_timeout: too many distinct failures."""


class FailureState(StrEnum):
    BOTH = "both"
    FAILED = "failed"
    RETRYING = "retrying"

    @classmethod
    def parse(cls, value: str) -> FailureState:
        """The state a query string names, or BOTH for anything else."""
        try:
            return cls(value)
        except ValueError:
            return cls.BOTH

    @property
    def predicate(self) -> Q:
        failed = STATE_PREDICATES[JobState.FAILED]
        return {"both": failed | RETRYING, "failed": failed, "retrying": RETRYING}[self.value]


@dataclass(frozen=True)
class FailureGroup:
    task: str
    message: str
    failed: int
    retrying: int
    first_seen: datetime
    last_seen: datetime
    example_job_id: int
    example_error: str = ""
    example_truncated: bool = False

    @property
    def total(self) -> int:
        return self.failed + self.retrying

    @property
    def key(self) -> str:
        """A short id for the group, stable across refreshes (HTML ids, hx-preserve)."""
        digest = blake2b(f"{self.task}\0{self.message}".encode(), digest_size=8)
        return digest.hexdigest()


@dataclass(frozen=True)
class FailureReport:
    now: datetime  # the database clock, for "first seen 3h ago"
    groups: list[FailureGroup]
    truncated: bool  # more groups exist than `limit`; the largest ones are shown
    # On a large table, the groups cover only this many of the newest failing jobs (None: all).
    newest: int | None = None

    @property
    def failed(self) -> int:
        return sum(group.failed for group in self.groups)

    @property
    def retrying(self) -> int:
        return sum(group.retrying for group in self.groups)


def failure_groups(
    alias: str,
    *,
    task: str = "",
    state: FailureState = FailureState.BOTH,
    limit: int = 200,
    example_length: int = EXAMPLE_LENGTH,
) -> FailureReport:
    """Failed and/or retrying jobs grouped by task and normalised error, largest group first.

    One grouped query over the jobs table (see `_grouped_sql`), then one by primary key for an
    example error per group (the newest job's, cut at `example_length` characters), then the
    database clock. `task` is an exact identifier; `limit` caps the groups (the largest ones).
    """
    jobs = Job.objects.using(alias).filter(state.predicate)
    if task:
        jobs = jobs.filter(task__identifier=task)
    newest = None
    if is_large(alias):
        # Millions of jobs: group the newest NEWEST_FAILURES failing ones (the page says so).
        # The id of the oldest of them comes from a walk down the primary key, and the grouped
        # query then reads only ids from there up: the work does not grow with the table.
        floor = list(jobs.order_by("-id").values_list("id", flat=True)[NEWEST_FAILURES - 1 :][:1])
        if floor:
            jobs = jobs.filter(id__gte=floor[0])
            newest = NEWEST_FAILURES
    sql, params = _grouped_sql(jobs, alias)
    try:
        # A savepoint, so that a statement timeout leaves the connection usable for the page.
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            cursor.execute(sql, [*params, limit + 1])
            columns = [column.name for column in cursor.description]
            rows = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    except OperationalError as error:
        if getattr(error.__cause__, "sqlstate", None) == QUERY_CANCELED:
            raise FailureGroupingTooSlow(
                "Grouping the failures took longer than the statement timeout."
            ) from error
        raise
    examples = {
        job_id: (text or "", length or 0)
        for job_id, text, length in Job.objects.using(alias)
        .filter(id__in=[row["example_job_id"] for row in rows[:limit]])
        .values_list("id", Left("last_error", example_length), Length("last_error"))
    }
    groups = []
    for row in rows[:limit]:
        text, length = examples.get(row["example_job_id"], ("", 0))
        groups.append(
            FailureGroup(
                task=row["task"],
                message=row["message"],
                failed=row["failed"],
                retrying=row["retrying"],
                first_seen=row["first_seen"],
                last_seen=row["last_seen"],
                example_job_id=row["example_job_id"],
                example_error=text,
                example_truncated=length > example_length,
            )
        )
    return FailureReport(
        now=database_now(alias), groups=groups, truncated=len(rows) > limit, newest=newest
    )


def _grouped_sql(jobs: QuerySet, alias: str) -> tuple[str, list]:
    """SQL and parameters for the groups, largest first; the caller appends the LIMIT value.

    Two steps, because the regular expressions cost far more than grouping: the inner query
    (built by the ORM) groups the jobs by task and first line with every digit turned into 0
    (which changes no normalised message, see the module docstring), so an error repeated on
    many jobs, ids and line numbers aside, is normalised once; the outer one normalises each
    distinct line with the rules the jobs list filters by and merges the lines that normalise
    alike. Every value is a bound parameter; the only text added here is this fixed frame.
    """
    lines = (
        jobs.order_by()
        .values(
            task_identifier=F("task__identifier"),
            line=_digits_to_zero(first_line_expression()),
        )
        .annotate(
            failed=Count("id", filter=STATE_PREDICATES[JobState.FAILED]),
            retrying=Count("id", filter=RETRYING),
            total=Count("id"),
            first_seen=Min("updated_at"),
            last_seen=Max("updated_at"),
            example_job_id=Max("id"),
        )
    )
    lines_sql, lines_params = lines.query.sql_with_params()
    message_sql, message_params = _compile(
        normalised_line_expression(RawSQL("lines.line", (), output_field=TextField())),
        jobs.query,
        alias,
    )
    sql = f"""
        SELECT lines.task_identifier AS task,
               {message_sql} AS message,
               sum(lines.failed)::bigint AS failed,
               sum(lines.retrying)::bigint AS retrying,
               sum(lines.total)::bigint AS total,
               min(lines.first_seen) AS first_seen,
               max(lines.last_seen) AS last_seen,
               max(lines.example_job_id) AS example_job_id
          FROM ({lines_sql}) AS lines
         GROUP BY 1, 2
         ORDER BY total DESC, last_seen DESC, task, message
         LIMIT %s
    """
    return sql, [*message_params, *lines_params]


def _digits_to_zero(line: Expression) -> Expression:
    """Every digit 1-9 becomes 0, as `translate(line, '123456789', '000000000')` would, but with
    nine `replace()` calls: several times faster on UTF-8 text (see the module docstring)."""
    for digit in _NONZERO_DIGITS:
        line = Func(line, Value(digit), Value("0"), function="replace", output_field=TextField())
    return line


def _compile(expression: Expression, query, alias: str) -> tuple[str, tuple]:
    compiler = query.get_compiler(using=alias)
    return compiler.compile(expression.resolve_expression(query))
