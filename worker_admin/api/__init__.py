"""The console's JSON API (django-ninja), authenticated by per-user bearer tokens."""
