"""The Alert model moves from the dashboard app to this one; its table stays.

State only: the table `dashboard_alert`, its index and its constraint are what
dashboard.0001 created. The content type is relabelled (its permissions follow)
and audit entries about alerts name the model as it is now called.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def _relabel(apps, schema_editor, old: str, new: str) -> None:
    ContentType = apps.get_model("contenttypes", "ContentType")
    AuditEntry = apps.get_model("mqttadmin", "AuditEntry")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=new, model="alert").exists():
        ContentType.objects.using(db).filter(app_label=old, model="alert").update(
            app_label=new
        )
    AuditEntry.objects.using(db).filter(target_type=f"{old}.alert").update(
        target_type=f"{new}.alert"
    )


def forwards(apps, schema_editor) -> None:
    _relabel(apps, schema_editor, "dashboard", "alerts")


def backwards(apps, schema_editor) -> None:
    _relabel(apps, schema_editor, "alerts", "dashboard")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("dashboard", "0001_initial"),
        ("mqttadmin", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Alert",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        ("rule_key", models.CharField(max_length=120)),
                        (
                            "subject",
                            models.CharField(
                                help_text="The topic, device or broker the alert is about.",
                                max_length=500,
                            ),
                        ),
                        (
                            "severity",
                            models.CharField(
                                choices=[
                                    ("info", "Info"),
                                    ("warning", "Warning"),
                                    ("critical", "Critical"),
                                ],
                                default="warning",
                                max_length=10,
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[("open", "Open"), ("resolved", "Resolved")],
                                default="open",
                                max_length=10,
                            ),
                        ),
                        ("message", models.TextField(blank=True)),
                        ("value", models.FloatField(blank=True, null=True)),
                        ("threshold", models.FloatField(blank=True, null=True)),
                        ("opened_at", models.DateTimeField(auto_now_add=True)),
                        ("resolved_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "acknowledged_at",
                            models.DateTimeField(blank=True, null=True),
                        ),
                        (
                            "acknowledged_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "product",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="alerts",
                                to="mqttadmin.product",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "dashboard_alert",
                        "ordering": ["-opened_at", "-id"],
                        "indexes": [
                            models.Index(
                                fields=["product", "state", "-opened_at"],
                                name="dashboard_a_product_6b9816_idx",
                            )
                        ],
                        "constraints": [
                            models.UniqueConstraint(
                                condition=models.Q(("state", "open")),
                                fields=("rule_key", "subject"),
                                name="alert_one_open_per_rule_and_subject",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(forwards, backwards),
    ]
