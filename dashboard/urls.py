from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.templatetags.static import static
from django.urls import include, path
from django.views.decorators.http import require_safe
from django.views.generic import RedirectView

from worker_admin.forms import LoginForm
from worker_admin.views import health

admin.site.site_header = "Graphile Worker console: users and roles"

urlpatterns = [
    # User and role management for admins (staff); the worker tables are not registered here.
    path("django-admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(authentication_form=LoginForm), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Monitoring, without a login: load balancers and Prometheus (worker_admin/views/health.py).
    path("healthz", health.healthz, name="healthz"),
    path("metrics", health.metrics, name="metrics"),
    path("api/", include("worker_admin.api.urls")),
    # Browsers ask for /favicon.ico on pages without our <link rel="icon"> (the admin site, the
    # API docs); whitenoise serves the file itself under STATIC_URL.
    path(
        "favicon.ico",
        login_not_required(
            require_safe(
                RedirectView.as_view(url=static("worker_admin/favicon.ico"), permanent=True)
            )
        ),
        name="favicon",
    ),  # token-authenticated JSON (docs/api.md)
    path("", include("worker_admin.urls")),
]

# Error pages in words (worker_admin/views/errors.py), never an exception's class name.
handler400 = "worker_admin.views.errors.bad_request"
handler403 = "worker_admin.views.errors.permission_denied"
handler404 = "worker_admin.views.errors.not_found"
handler500 = "worker_admin.views.errors.server_error"
