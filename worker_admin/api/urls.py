"""/api/: the NinjaAPI's views, exempt from LoginRequiredMiddleware.

The API authenticates by bearer token, not by session: a request without one must get the
API's 401 JSON, not a redirect to the login page. ninja builds one view function per path;
Django's `login_not_required` marks each of them (django-ninja issue #1461).
"""

from django.contrib.auth.decorators import login_not_required
from django.urls import URLPattern, URLResolver

from worker_admin.api.main import api


def _exempt(patterns):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            _exempt(pattern.url_patterns)
        elif isinstance(pattern, URLPattern):
            login_not_required(pattern.callback)
    return patterns


_patterns, _app_name, app_name = api.urls  # included as namespace "api", as ninja reverses
urlpatterns = _exempt(_patterns)
