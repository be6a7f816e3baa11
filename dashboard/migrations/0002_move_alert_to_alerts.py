"""The Alert model now belongs to the alerts app (alerts.0001): removed from this
app's state only; the table `dashboard_alert` stays, with its rows."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("dashboard", "0001_initial"),
        ("alerts", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="Alert")],
            database_operations=[],
        ),
    ]
