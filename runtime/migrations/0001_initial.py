# Runtime leases, runtime workers and dead letters, moved from brokers with their
# tables (Meta.db_table): state only, no table is created or touched.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("brokers", "0013_move_runtime_state_to_runtime"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="RuntimeLease",
                    fields=[
                        (
                            "broker",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="lease",
                                serialize=False,
                                to="brokers.broker",
                            ),
                        ),
                        ("owner", models.CharField(max_length=200)),
                        ("expires_at", models.DateTimeField(db_index=True)),
                        ("acquired_at", models.DateTimeField()),
                    ],
                    options={"db_table": "brokers_runtimelease"},
                ),
                migrations.CreateModel(
                    name="RuntimeWorker",
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
                        ("owner", models.CharField(max_length=200, unique=True)),
                        ("seen_at", models.DateTimeField(db_index=True)),
                    ],
                    options={"db_table": "brokers_runtimeworker"},
                ),
                migrations.CreateModel(
                    name="DeadLetter",
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
                        ("topic", models.TextField()),
                        ("payload", models.BinaryField()),
                        ("qos", models.PositiveSmallIntegerField(default=0)),
                        ("error", models.TextField()),
                        ("received_at", models.DateTimeField()),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "broker",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={"db_table": "brokers_deadletter", "ordering": ["-id"]},
                ),
            ],
            database_operations=[],
        ),
    ]
