"""The failures page's table rows, built in Python.

Up to 200 groups, each with a dozen links, counts, dates and the example: as template markup
that was about 0.3 ms a row (some 50 ms of a 10M-job page, #15), almost all of it the template
engine's per-variable work, and `format_html` still cost 0.14 ms a row. Django's admin builds
its change list's result rows in Python for the same reason (`items_for_result`). Here every
value that is not a number of ours goes through `_e`, which is what Django's `escape` (and so
a template's autoescape) does: `html.escape`, quotes included. The markup mirrors what the
page's template had; tests/test_failures.py and tests/e2e/test_hostile_content.py hold it to
that.
"""

from __future__ import annotations

from datetime import datetime
from html import escape as _e
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString, mark_safe

from worker_admin.failures import FailureGroup, FailureReport
from worker_admin.templatetags.console import age

register = template.Library()

NO_TEXT = '<p class="small muted">No error text: the job has none, or it has completed since.</p>'


@register.simple_tag
def failure_rows(report: FailureReport, state: str, can_act: bool) -> SafeString:
    """The table body's rows for `report`, under the page's state filter (`both`, `failed` or
    `retrying`), with the group actions when the viewer may act on jobs."""
    jobs_url, action_url = reverse("worker_admin:jobs"), reverse("worker_admin:job_action")
    rows = [
        _row(group, report.now, state, bool(can_act), jobs_url, action_url)
        for group in report.groups
    ]
    return mark_safe("\n".join(rows))  # every value in them is escaped by _e


def _row(
    group: FailureGroup, now: datetime, state: str, can_act: bool, jobs_url: str, action_url: str
) -> str:
    # Django's urlencode filter, once per row rather than once per link.
    task = quote(group.task, safe="/")
    in_group = f"task={task}&error={quote(group.message, safe='/')}"

    def jobs(job_state: str) -> str:
        return _e(f"{jobs_url}?state={job_state}&{in_group}")

    cells = [
        f'<th scope="row"><a class="ident long-ident" href="{_e(f"?task={task}&state={state}")}"'
        f' title="Only this task\'s failures">{_e(group.task)}</a></th>',
        '<td class="failure-cell"><a class="failure-message" '
        f'href="{jobs("failed" if group.failed else "retrying")}">{_e(group.message)}</a>'
        f"{_example(group)}</td>",
        _count("Failed", group.failed, jobs("failed"), ' class="is-bad"'),
        _count("Retrying", group.retrying, jobs("retrying"), ""),
        _seen("First seen", group.first_seen, now),
        _seen("Last seen", group.last_seen, now),
    ]
    if can_act:
        cells.append(_actions(group, state, f"{action_url}?{in_group}"))
    return f"<tr>{''.join(cells)}</tr>"


def _example(group: FailureGroup) -> str:
    """The start of the newest job's error; the job's own page has all of it."""
    job_id = int(group.example_job_id)
    link = _e(reverse("worker_admin:job_detail", args=[job_id]))
    if not group.example_error:
        text = NO_TEXT
    else:
        more = " …" if group.example_truncated else ""
        text = f'<pre class="error-text">{_e(group.example_error)}{more}</pre>'
    if group.example_truncated:
        where = f'The start of the error: <a href="{link}">job {job_id}</a> has all of it.'
    else:
        where = f'<a href="{link}">Open job {job_id}</a>'
    return (
        f'<details class="failure-example" id="example-{_e(group.key)}" hx-preserve>'
        f"<summary>Example from job {job_id}</summary>{text}"
        f'<p class="small">{where}</p></details>'
    )


def _count(label: str, count: int, href: str, css: str) -> str:
    """A count linking to its jobs (`href` already escaped)."""
    if not count:
        return f'<td class="num" data-label="{label}"><span class="muted">0</span></td>'
    return f'<td class="num" data-label="{label}"><a{css} href="{href}">{int(count):,}</a></td>'


def _seen(label: str, moment: datetime, now: datetime) -> str:
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return (
        f'<td class="when" data-label="{label}" title="{_e(exact)}">{_e(age(moment, now))} ago</td>'
    )


def _actions(group: FailureGroup, state: str, action: str) -> str:
    """Buttons of the page's one group-action form (it holds the CSRF token), each posting to
    the job actions' own preview on the jobs list's filter for exactly this group: it pins the
    group's jobs, and nothing changes before its confirmation."""
    scope = "failing=yes" if state == "both" else f"state={state}"
    buttons = [_button(f"{action}&{scope}", "retry", "", "Retry this group…")]
    if group.retrying and state != "failed":
        retrying = int(group.retrying)
        title = (
            f' title="Permanently fails its {retrying} retrying job{"" if retrying == 1 else "s"};'
            ' the failed ones already are"'
        )
        buttons.append(_button(f"{action}&state=retrying", "fail", title, "Fail this group…"))
    return f'<td class="group-actions" data-label="Act on the group">{" ".join(buttons)}</td>'


def _button(formaction: str, action: str, title: str, label: str) -> str:
    return (
        f'<button type="submit" form="group-action" formaction="{_e(formaction)}" '
        f'class="button" name="action" value="{action}"{title}>{label}</button>'
    )
