"""The table behind the shared snapshots' cache (worker_admin/snapshots.py): Django's own
database cache table, created here so deployments need no extra `createcachetable` step."""

from django.conf import settings
from django.core.management import call_command
from django.db import migrations


def create(apps, schema_editor):
    location = settings.CACHES["snapshots"]["LOCATION"]
    call_command("createcachetable", location, database=schema_editor.connection.alias)


def drop(apps, schema_editor):
    location = settings.CACHES["snapshots"]["LOCATION"]
    schema_editor.execute(f"DROP TABLE IF EXISTS {schema_editor.quote_name(location)}")


class Migration(migrations.Migration):
    dependencies = [("worker_admin", "0006_confirmations")]

    operations = [migrations.RunPython(create, drop)]
