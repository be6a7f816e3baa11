# The action run model, moved from brokers with its table (Meta.db_table): state
# only, no table is created or touched.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("brokers", "0012_move_action_runs_to_actions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="ActionRun",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("topic", models.TextField()),
                        ("payload", models.BinaryField()),
                        ("qos", models.PositiveSmallIntegerField(default=0)),
                        ("retain", models.BooleanField(default=False)),
                        ("received_at", models.DateTimeField()),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("pending", "Pending"),
                                    ("done", "Done"),
                                    ("failed", "Failed"),
                                ],
                                default="pending",
                                max_length=8,
                            ),
                        ),
                        ("done_indexes", models.JSONField(default=list)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("error", models.TextField(blank=True)),
                        (
                            "created_at",
                            models.DateTimeField(auto_now_add=True, db_index=True),
                        ),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        (
                            "claimed_by",
                            models.CharField(blank=True, editable=False, max_length=32),
                        ),
                        (
                            "claimed_until",
                            models.DateTimeField(blank=True, editable=False, null=True),
                        ),
                        (
                            "subscription",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="action_runs",
                                to="brokers.subscription",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_actionrun",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(
                                fields=["state", "created_at"],
                                name="brokers_act_state_538181_idx",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
