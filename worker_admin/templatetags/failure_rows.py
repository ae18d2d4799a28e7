"""The failures page's table rows, built in Python.

Up to 200 groups, each with a dozen links, counts, dates and the example: as template markup
that was about 0.3 ms a row (some 50 ms of a 10M-job page, #15), almost all of it the template
engine's per-variable work. Django's admin builds its change list's result rows in Python for
the same reason (`items_for_result`); here too every value goes through `format_html`, so it is
escaped exactly as a template would escape it. The markup mirrors what the page's template had.
"""

from __future__ import annotations

from datetime import datetime
from urllib.parse import quote

from django import template
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from worker_admin.failures import FailureGroup, FailureReport
from worker_admin.templatetags.console import age

register = template.Library()


@register.simple_tag
def failure_rows(report: FailureReport, state: str, can_act: bool) -> SafeString:
    """The table body's rows for `report`, under the page's state filter (`both`, `failed` or
    `retrying`), with the group actions when the viewer may act on jobs."""
    urls = {"jobs": reverse("worker_admin:jobs"), "action": reverse("worker_admin:job_action")}
    rows = [_row(group, report.now, state, can_act, urls) for group in report.groups]
    return mark_safe("\n".join(rows))  # each row is built with format_html


def _row(group: FailureGroup, now: datetime, state: str, can_act: bool, urls: dict) -> str:
    # Django's urlencode filter, once per row rather than once per link.
    task, error = quote(group.task, safe="/"), quote(group.message, safe="/")
    in_group = f"task={task}&error={error}"

    def jobs(job_state: str) -> str:
        return f"{urls['jobs']}?state={job_state}&{in_group}"

    cells = [
        format_html(
            '<th scope="row"><a class="ident long-ident" href="?task={}&amp;state={}" '
            'title="Only this task\'s failures">{}</a></th>',
            task,
            state,
            group.task,
        ),
        format_html(
            '<td class="failure-cell"><a class="failure-message" href="{}">{}</a>{}</td>',
            jobs("failed" if group.failed else "retrying"),
            group.message,
            _example(group),
        ),
        _count("Failed", group.failed, jobs("failed"), "is-bad"),
        _count("Retrying", group.retrying, jobs("retrying"), ""),
        _seen("First seen", group.first_seen, now),
        _seen("Last seen", group.last_seen, now),
    ]
    if can_act:
        cells.append(_actions(group, state, urls["action"] + "?" + in_group))
    return format_html("<tr>{}</tr>", mark_safe("".join(cells)))


def _example(group: FailureGroup) -> str:
    """The start of the newest job's error; the job's own page has all of it."""
    link = reverse("worker_admin:job_detail", args=[group.example_job_id])
    if not group.example_error:
        text = mark_safe(
            '<p class="small muted">No error text: the job has none, or it has completed since.</p>'
        )
    else:
        more = " …" if group.example_truncated else ""
        text = format_html('<pre class="error-text">{}{}</pre>', group.example_error, more)
    if group.example_truncated:
        where = format_html(
            'The start of the error: <a href="{}">job {}</a> has all of it.',
            link,
            group.example_job_id,
        )
    else:
        where = format_html('<a href="{}">Open job {}</a>', link, group.example_job_id)
    return format_html(
        '<details class="failure-example" id="example-{}" hx-preserve>'
        "<summary>Example from job {}</summary>{}"
        '<p class="small">{}</p></details>',
        group.key,
        group.example_job_id,
        text,
        where,
    )


def _count(label: str, count: int, href: str, css: str) -> str:
    if not count:
        return format_html(
            '<td class="num" data-label="{}"><span class="muted">0</span></td>', label
        )
    return format_html(
        '<td class="num" data-label="{}"><a{} href="{}">{}</a></td>',
        label,
        format_html(' class="{}"', css) if css else "",
        href,
        f"{count:,}",
    )


def _seen(label: str, moment: datetime, now: datetime) -> str:
    exact = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")
    return format_html(
        '<td class="when" data-label="{}" title="{}">{} ago</td>', label, exact, age(moment, now)
    )


def _actions(group: FailureGroup, state: str, action: str) -> str:
    """Buttons of the page's one group-action form (it holds the CSRF token), each posting to
    the job actions' own preview on the jobs list's filter for exactly this group: it pins the
    group's jobs, and nothing changes before its confirmation."""
    button = (
        '<button type="submit" form="group-action" formaction="{}" class="button" '
        'name="action" value="{}"{}>{}</button>'
    )
    scope = "failing=yes" if state == "both" else f"state={state}"
    buttons = [format_html(button, f"{action}&{scope}", "retry", "", "Retry this group…")]
    if group.retrying and state != "failed":
        plural = "" if group.retrying == 1 else "s"
        title = format_html(
            ' title="Permanently fails its {} retrying job{}; the failed ones already are"',
            group.retrying,
            plural,
        )
        buttons.append(
            format_html(button, f"{action}&state=retrying", "fail", title, "Fail this group…")
        )
    return format_html(
        '<td class="group-actions" data-label="Act on the group">{}</td>',
        mark_safe(" ".join(buttons)),
    )
