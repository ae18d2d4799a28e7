from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

admin.site.site_header = "Graphile Worker console: users and roles"

urlpatterns = [
    # User and role management for admins (staff); the worker tables are not registered here.
    path("django-admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", include("worker_admin.urls")),
]
