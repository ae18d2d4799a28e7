"""A confirmation's pins are stored out of line without compression.

A sweep of dead workers that held 10,000 jobs pins ~1 MB of JSON; compressing it (pglz) took
about half of the INSERT that issues the confirmation, inside the dry run the user waits for.
Confirmations are deleted two days after they are used or expire, so the space is brief."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("worker_admin", "0011_audit_worker_database")]

    operations = [
        migrations.RunSQL(
            "ALTER TABLE worker_admin_confirmation ALTER COLUMN pinned SET STORAGE EXTERNAL",
            "ALTER TABLE worker_admin_confirmation ALTER COLUMN pinned SET STORAGE EXTENDED",
        )
    ]
