"""The jobs list's filters, search, sort and keyset cursor, parsed from the query string.

Everything lives in the URL so a view can be shared and works without JavaScript. Bad values
never fail the page: each one is dropped with a sentence saying why, and the rest still apply.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django import forms
from django.core import signing
from django.db.models import F, Q, QuerySet, TextField
from django.db.models.fields.tuple_lookups import (
    Tuple,
    TupleGreaterThanOrEqual,
    TupleLessThanOrEqual,
)
from django.db.models.functions import Cast

from worker_admin.models import JobQueue, Task
from worker_admin.states import RETRYING, STATE_PREDICATES, JobState

SMALLINT = (-32_768, 32_767)
MAX_SEARCH = 500
PAGE_SIZES = (25, 50, 100, 200)
DEFAULT_PAGE_SIZE = 50
STATE_TABS = ("all", *(s.value for s in JobState), "retrying")


@dataclass(frozen=True)
class Sort:
    label: str
    fields: tuple[tuple[str, bool], ...]  # (column, descending); always ends with id


SORTS: dict[str, Sort] = {
    "newest": Sort("Newest first", (("id", True),)),
    "oldest": Sort("Oldest first", (("id", False),)),
    "run_at": Sort("Run at, soonest first", (("run_at", False), ("id", False))),
    "run_at_desc": Sort("Run at, latest first", (("run_at", True), ("id", True))),
    "priority": Sort(
        "Priority, then run at", (("priority", False), ("run_at", False), ("id", False))
    ),
    "updated": Sort("Recently updated", (("updated_at", True), ("id", True))),
    "attempts": Sort("Most attempts", (("attempts", True), ("id", True))),
    # Locked jobs only (locked_at is null elsewhere). No index orders jobs by locked_at, so a
    # page reads and sorts every locked job: as many as are running now, and the page says so.
    "lock_age": Sort("Lock age, oldest first", (("locked_at", False), ("id", False))),
}
LOCKED_ONLY_SORTS = {"lock_age"}
# Jobs that wait for their turn read best in the order they will run: ready jobs go by
# priority, then run_at (the workers' order, served by jobs_main_index); scheduled ones by
# when they become ready.
DEFAULT_SORT = {"ready": "priority", "scheduled": "run_at"}
DATETIME_FIELDS = {"run_at", "updated_at", "created_at", "locked_at"}


class JobFilterForm(forms.Form):
    state = forms.ChoiceField(choices=[(s, s) for s in STATE_TABS], required=False)
    task = forms.CharField(max_length=128, required=False, strip=True)
    queue = forms.CharField(max_length=128, required=False, strip=True)
    key = forms.CharField(max_length=512, required=False, strip=True)
    locked_by = forms.CharField(max_length=512, required=False, strip=True)
    priority_min = forms.IntegerField(min_value=SMALLINT[0], max_value=SMALLINT[1], required=False)
    priority_max = forms.IntegerField(min_value=SMALLINT[0], max_value=SMALLINT[1], required=False)
    created_after = forms.DateTimeField(required=False)
    created_before = forms.DateTimeField(required=False)
    run_after = forms.DateTimeField(required=False)
    run_before = forms.DateTimeField(required=False)
    has_error = forms.ChoiceField(
        choices=[("", "any"), ("yes", "yes"), ("no", "no")], required=False
    )
    q = forms.CharField(max_length=MAX_SEARCH, required=False, strip=True)
    error = forms.CharField(max_length=2_000, required=False, strip=True)
    # The failures page's groups are failed and retrying jobs together: "yes" narrows to those
    # two, so an action on a group pins exactly the group's jobs (with task and error).
    failing = forms.ChoiceField(choices=[("", "any"), ("yes", "yes")], required=False)
    sort = forms.ChoiceField(choices=[(k, s.label) for k, s in SORTS.items()], required=False)
    size = forms.TypedChoiceField(
        choices=[(n, n) for n in PAGE_SIZES], coerce=int, required=False, empty_value=None
    )

    LABELS = {
        "state": "state",
        "q": "search",
        "size": "page size",
        "has_error": "has error",
        "error": "error group",
        "failing": "failed or retrying",
    }


@dataclass
class JobFilters:
    """The valid filters of one request, and a sentence for each value that was dropped."""

    values: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def state(self) -> str:
        return self.values.get("state") or "all"

    @property
    def sort_key(self) -> str:
        return self.values.get("sort") or DEFAULT_SORT.get(self.state, "newest")

    @property
    def sort(self) -> Sort:
        return SORTS[self.sort_key]

    @property
    def page_size(self) -> int:
        return self.values.get("size") or DEFAULT_PAGE_SIZE

    def active(self) -> dict[str, Any]:
        """The filters that narrow the rows (not state, sort or page size)."""
        skip = {"state", "sort", "size"}
        return {k: v for k, v in self.values.items() if k not in skip and v not in (None, "")}

    def query(self, **overrides: Any) -> dict[str, str]:
        """Query-string parameters for links that keep these filters."""
        params = {k: _param(v) for k, v in self.values.items() if v not in (None, "")}
        for name, value in overrides.items():
            if value in (None, ""):
                params.pop(name, None)
            else:
                params[name] = _param(value)
        if params.get("state") == "all":
            params.pop("state")
        return params


def _param(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def parse_filters(data) -> JobFilters:
    form = JobFilterForm(data)
    form.is_valid()
    result = JobFilters(values=dict(form.cleaned_data))
    for name, errors in form.errors.items():
        label = JobFilterForm.LABELS.get(name, name.replace("_", " "))
        raw = str(data.get(name, ""))
        shown = raw if len(raw) <= 40 else raw[:40] + "…"
        result.problems.append(f"Ignored the {label} filter “{shown}”: {errors[0]}")
    if result.values.get("sort") in LOCKED_ONLY_SORTS and result.state != "locked":
        # A sentence starting "The …": the API refuses with it, the page shows it and goes on.
        result.problems.append(
            "The lock age sort orders locked jobs only: use it on the locked tab."
        )
        result.values["sort"] = ""
    for low, high, label in (
        ("priority_min", "priority_max", "priority"),
        ("created_after", "created_before", "created"),
        ("run_after", "run_before", "run at"),
    ):
        a, b = result.values.get(low), result.values.get(high)
        if a is not None and b is not None and a > b:
            result.problems.append(f"The {label} range is empty (from is after to); ignored it.")
            result.values[low] = result.values[high] = None
    return result


def apply_filters(jobs: QuerySet, filters: JobFilters, *, with_state: bool = True) -> QuerySet:
    """Narrow a Job queryset by every valid filter, optionally also by the state tab."""
    v = filters.values
    # Task and queue names are looked up first (tables of tens of rows): the jobs query then
    # compares a literal id, which the planner's statistics know (a hot task's share, a rare
    # one's), so it picks the right plan, and an opt-in index on task_id or job_queue_id.
    for name, model, column in (("task", Task, "identifier"), ("queue", JobQueue, "queue_name")):
        if v.get(name):
            found = model.objects.using(jobs.db).filter(**{column: v[name]})
            ids = list(found.values_list("id", flat=True)[:1])
            if not ids:
                return jobs.none()
            jobs = jobs.filter(**{"task_id" if name == "task" else "job_queue_id": ids[0]})
    for name, lookup in (("key", "key"), ("locked_by", "locked_by")):
        if v.get(name):
            jobs = jobs.filter(**{lookup: v[name]})
    ranges = {
        "priority_min": "priority__gte",
        "priority_max": "priority__lte",
        "created_after": "created_at__gte",
        "created_before": "created_at__lte",
        "run_after": "run_at__gte",
        "run_before": "run_at__lte",
    }
    for name, lookup in ranges.items():
        if v.get(name) is not None:
            jobs = jobs.filter(**{lookup: v[name]})
    if v.get("has_error") == "yes":
        jobs = jobs.filter(last_error__isnull=False)
    elif v.get("has_error") == "no":
        jobs = jobs.filter(last_error__isnull=True)
    if v.get("q"):
        jobs = search(jobs, v["q"])
    if v.get("error"):
        from worker_admin.failures import normalised_error_expression

        jobs = jobs.annotate(error_group=normalised_error_expression()).filter(
            error_group=v["error"]
        )
    if v.get("failing") == "yes":
        jobs = jobs.filter(STATE_PREDICATES[JobState.FAILED] | RETRYING)
    if with_state:
        jobs = filter_state(jobs, filters.state)
    return jobs


def filter_state(jobs: QuerySet, state: str) -> QuerySet:
    predicate = state_predicate(state)
    return jobs if predicate is None else jobs.filter(predicate)


def state_predicate(state: str) -> Q | None:
    """The condition of a state tab ("retrying" included); None for "all" or an unknown name."""
    if state == "retrying":
        return RETRYING
    if state in JobState._value2member_map_:
        return STATE_PREDICATES[JobState(state)]
    return None


def search(jobs: QuerySet, text: str) -> QuerySet:
    """Jobs whose id or key is the text; when none is, jobs whose error or payload holds it.

    An id or a key is answered from an index; looking for text in every error and payload
    reads the table, so it only runs when the text is not an exact id or key (on millions of
    jobs it is bounded by the read statement timeout, and the page says to narrow it).
    """
    exact = exact_search_predicate(text)
    if jobs.filter(exact).exists():
        return jobs.filter(exact)
    if len(text) < 3:
        return jobs.filter(exact)  # nothing found; too short to look for as text
    return with_payload_text(jobs).filter(search_predicate(text))


def exact_search_predicate(text: str) -> Q:
    predicate = Q(key=text)
    if text.isascii() and text.isdigit() and len(text) < 19:
        predicate |= Q(id=int(text))
    return predicate


def search_predicate(text: str) -> Q:
    """A job id, a job key, or text inside last_error or the payload.

    An id or a key hits an index; text inside errors and payloads scans the table, bounded by
    the read statement timeout (the page then says to narrow the filters).
    """
    predicate = Q(key=text)
    if text.isascii() and text.isdigit() and len(text) < 19:
        predicate |= Q(id=int(text))
    if len(text) >= 3:
        predicate |= Q(last_error__icontains=text) | Q(payload_text__icontains=text)
    return predicate


def with_payload_text(jobs: QuerySet) -> QuerySet:
    return jobs.alias(payload_text=Cast("payload", output_field=TextField()))


# -- keyset cursor --------------------------------------------------------------------------

CURSOR_SALT = "worker_admin.jobs.cursor"


class BadCursor(ValueError):
    pass


def make_cursor(sort_key: str, job, direction: str) -> str:
    values = [_cursor_value(getattr(job, column)) for column, _ in SORTS[sort_key].fields]
    return signing.dumps({"s": sort_key, "d": direction, "v": values}, salt=CURSOR_SALT)


def _cursor_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def read_cursor(token: str, sort_key: str) -> tuple[str, list[Any]]:
    """(direction, values) from a signed cursor; BadCursor if edited or for another sort."""
    try:
        data = signing.loads(token, salt=CURSOR_SALT)
    except signing.BadSignature:
        raise BadCursor("That page link is not valid (it may have been edited)") from None
    sort = SORTS.get(data.get("s"))
    if data.get("s") != sort_key or sort is None or data.get("d") not in ("after", "before"):
        raise BadCursor("That page link belongs to another sort order")
    values = data.get("v")
    if not isinstance(values, list) or len(values) != len(sort.fields):
        raise BadCursor("That page link is not valid")
    try:
        parsed = [
            datetime.fromisoformat(value) if column in DATETIME_FIELDS else int(value)
            for (column, _), value in zip(sort.fields, values, strict=True)
        ]
    except (TypeError, ValueError):
        raise BadCursor("That page link is not valid") from None
    return data["d"], parsed


def seek(sort: Sort, values: list[Any], *, forward: bool) -> Q:
    """Rows strictly after (forward) or before the cursor row in this sort order.

    The lexicographic expansion (a > x) OR (a = x AND b > y) OR … handles ties on the leading
    columns; id, last in every sort, makes each position unique. PostgreSQL cannot use an index
    for that OR, so when the columns share one direction a redundant row bound
    (a, b) >= (x, y) is added: it becomes the index condition (0.1 ms instead of 67 ms at depth
    20,000 of a million ready jobs, through jobs_main_index).
    """
    predicate = Q()
    equal_prefix = Q()
    for (column, descending), value in zip(sort.fields, values, strict=True):
        goes_up = forward != descending
        step = Q(**{f"{column}__{'gt' if goes_up else 'lt'}": value})
        predicate |= equal_prefix & step
        equal_prefix &= Q(**{column: value})
    leading = [column for column, _ in sort.fields[:-1]]
    directions = {descending for _, descending in sort.fields}
    if leading and len(directions) == 1:
        goes_up = forward != directions.pop()
        bound = TupleGreaterThanOrEqual if goes_up else TupleLessThanOrEqual
        # Django 5.2's tuple lookups (used for composite keys) render a row comparison.
        predicate &= Q(bound(Tuple(*(F(column) for column in leading)), tuple(values[:-1])))
    return predicate


def order_by(sort: Sort, *, forward: bool) -> list[str]:
    return [f"{'-' if descending == forward else ''}{column}" for column, descending in sort.fields]
