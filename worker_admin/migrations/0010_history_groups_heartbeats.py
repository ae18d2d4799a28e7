from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("worker_admin", "0009_audit_started"),
    ]

    operations = [
        migrations.AddField(
            model_name="historysnapshot",
            name="group_states",
            field=models.JSONField(null=True),
        ),
        migrations.AddField(
            model_name="historysnapshot",
            name="heartbeats",
            field=models.JSONField(null=True),
        ),
    ]
