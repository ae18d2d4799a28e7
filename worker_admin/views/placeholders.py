from django.shortcuts import render

TITLES = {"workers": "Workers", "maintenance": "Maintenance", "audit": "Audit"}


def coming(request, page: str):
    return render(request, "worker_admin/coming.html", {"title": TITLES[page], "active": page})
