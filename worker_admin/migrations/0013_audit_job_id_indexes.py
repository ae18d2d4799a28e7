"""A job's page finds the audit entries that named it through these, not by reading every
entry's id lists (worker_admin/audit.py, AuditEntry.Meta)."""

import django.contrib.postgres.indexes
from django.conf import settings
from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("worker_admin", "0012_confirmation_pins_uncompressed"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditentry",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["requested_ids"],
                name="wa_audit_requested_ids",
                opclasses=["jsonb_path_ops"],
            ),
        ),
        migrations.AddIndex(
            model_name="auditentry",
            index=django.contrib.postgres.indexes.GinIndex(
                fields=["changed_ids"], name="wa_audit_changed_ids", opclasses=["jsonb_path_ops"]
            ),
        ),
    ]
