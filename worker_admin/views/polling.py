"""Refreshes that cost almost nothing when nothing changed, and once per interval when it did.

Open tabs poll their page's live part (htmx, `hx-trigger="every Ns"`). `live_fragment()` answers
such a poll from the shared snapshots the part shows (worker_admin/snapshots.py):

- its ETag is a digest of those snapshots' versions, the request's path and query, the template
  and what the viewer's role changes in it. A browser sends it back (If-None-Match) on the next
  poll; if the data has not changed, the answer is 304 Not Modified, with no rendering and no
  counting (the browser hands htmx its stored copy);
- otherwise the rendered part is itself kept in the shared cache under that ETag, so twenty
  people watching the same page get one rendering per interval between them.

Only live parts qualify: they carry no CSRF token, user name or flash message (a full page does),
so one rendering is right for everyone with the same role and filters. A full page is its own
response (no ETag: it has the frame, the token and the messages), but `page_fragment()` puts the
very rendering its refreshes share into it, so opening a watched page renders only the frame.

`shared_fragment()` goes one step further for parts whose data is not a snapshot of its own (the
jobs list): the rendering itself is the shared snapshot, taken once per
SHARED_SNAPSHOT_SECONDS for every viewer with the same role, time zone and URL, and the ETag is
a digest of what it shows. A part's "as of" stamp (`<time class="as-of">`) is left out of the
digest: a refresh where only the clock moved is answered 304, and the stamp the tab keeps is
when what it shows was first seen.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from django.conf import settings
from django.core.cache import caches
from django.http import HttpResponse, HttpResponseNotModified
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_cache_control
from django.utils.safestring import SafeString, mark_safe

from worker_admin import databases, snapshots
from worker_admin.roles import role_here
from worker_admin.snapshots import CACHE

FRAGMENT_SECONDS = 120


def etag_for(request, template: str, versions: list[str]) -> str:
    viewer = [role_here(request.user), timezone.get_current_timezone_name()]
    text = "|".join([template, request.get_full_path(), *viewer, *versions])
    return '"' + hashlib.sha256(text.encode()).hexdigest()[:32] + '"'


def live_fragment(request, template: str, context: dict, versions: list[str]) -> HttpResponse:
    """Render `template` (a partial) for a poll, or answer 304 / a shared rendering."""
    etag = etag_for(request, template, versions)
    if etag in _sent_etags(request):
        response = HttpResponseNotModified()
    else:
        cache = caches[CACHE]
        body = cache.get("fragment:" + etag)
        if body is None:
            body = render(request, template, context).content
            cache.set("fragment:" + etag, body, timeout=FRAGMENT_SECONDS)
        response = HttpResponse(body)
    response["ETag"] = etag
    patch_cache_control(response, private=True, no_cache=True)
    response["Vary"] = "HX-Request, Cookie"
    return response


STAMP = re.compile(rb'<time class="as-of"[^>]*>.*?</time>', re.DOTALL)


def shared_fragment(
    request, template: str, build_context: Callable[[], dict], name: str
) -> HttpResponse:
    """Answer a poll of `template` from one rendering shared per interval (see above)."""
    key = fragment_key(request, template, name)
    shown = snapshots.shared(
        "fragment:" + key,
        _renderer(request, template, build_context),
        seconds=settings.SHARED_SNAPSHOT_SECONDS,
    )
    digest = hashlib.sha256(key.encode() + STAMP.sub(b"", shown.value)).hexdigest()[:32]
    etag = f'"{digest}"'
    response = HttpResponseNotModified() if etag in _sent_etags(request) else None
    response = response or HttpResponse(shown.value)
    response["ETag"] = etag
    patch_cache_control(response, private=True, no_cache=True)
    response["Vary"] = "HX-Request, Cookie"
    return response


def page_fragment(
    request, template: str, build_context: Callable[[], dict], name: str, *, slow: bool
) -> SafeString | None:
    """The live part of a full page: the very rendering its refreshes share (`shared_fragment`),
    so opening a page that anyone watches renders only its frame.

    With `slow` (a large table, whose counts take a sample), a page nobody has watched for two
    intervals gets None instead of waiting for them: the page shows itself with the part marked
    as counting, the part is taken right after the response, and the page's first refresh
    (hx-trigger "load") fetches it."""
    take = snapshots.prepare if slow else snapshots.shared
    found = take(
        "fragment:" + fragment_key(request, template, name),
        _renderer(request, template, build_context),
        seconds=settings.SHARED_SNAPSHOT_SECONDS,
    )
    return mark_safe(found.value.decode()) if found is not None else None


def live_page(
    request, template: str, part: str, build_context: Callable[[], dict], page: dict, *, slow: bool
) -> HttpResponse:
    """A page whose live part (`template#part`, its element id) is one shared rendering: a
    refresh gets `shared_fragment`, a full page is `page` around `page_fragment` (the template
    shows `live_body`, or a placeholder asking for the part on load while `counting`). `slow`
    matters for full pages only (see `page_fragment`)."""
    fragment = f"{template}#{part}"
    if request.htmx:
        return shared_fragment(request, fragment, build_context, part)
    body = page_fragment(request, fragment, build_context, part, slow=slow)
    return render(request, template, page | {"live_body": body, "counting": body is None})


def fragment_key(request, template: str, name: str) -> str:
    """What makes one rendering right for a viewer: the page, the part, the URL and what the
    viewer's role, time zone and databases change in it."""
    viewer = [role_here(request.user), timezone.get_current_timezone_name()]
    if databases.several():  # the overview's database rows depend on which ones one may open
        viewer.append(
            ",".join(d.name for d in databases.every() if databases.may_open(request.user, d))
        )
    return "|".join([name, template, request.get_full_path(), *viewer])


def _renderer(request, template: str, build_context: Callable[[], dict]) -> Callable[[], bytes]:
    return lambda: render(request, template, build_context()).content


def _sent_etags(request) -> set[str]:
    header = request.META.get("HTTP_IF_NONE_MATCH", "")
    return {part.strip().removeprefix("W/") for part in header.split(",") if part.strip()}
