# The models of $SYS statistics and connected clients, moved from brokers with
# their tables (Meta.db_table): state only, no table is created or touched.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("brokers", "0010_move_sys_stats_to_observe"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="BrokerSysStats",
                    fields=[
                        (
                            "broker",
                            models.OneToOneField(
                                on_delete=django.db.models.deletion.CASCADE,
                                primary_key=True,
                                related_name="sys_stats",
                                serialize=False,
                                to="brokers.broker",
                            ),
                        ),
                        ("values", models.JSONField(blank=True, default=dict)),
                        ("updated_at", models.DateTimeField(blank=True, null=True)),
                        ("sampled_at", models.DateTimeField(blank=True, null=True)),
                        ("log_seen_at", models.DateTimeField(blank=True, null=True)),
                    ],
                    options={
                        "verbose_name": "broker $SYS statistics",
                        "verbose_name_plural": "broker $SYS statistics",
                        "db_table": "brokers_brokersysstats",
                    },
                ),
                migrations.CreateModel(
                    name="BrokerStatsSample",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("sampled_at", models.DateTimeField()),
                        (
                            "messages_received",
                            models.PositiveBigIntegerField(blank=True, null=True),
                        ),
                        (
                            "messages_sent",
                            models.PositiveBigIntegerField(blank=True, null=True),
                        ),
                        (
                            "messages_received_per_s",
                            models.FloatField(blank=True, null=True),
                        ),
                        (
                            "messages_sent_per_s",
                            models.FloatField(blank=True, null=True),
                        ),
                        (
                            "clients_connected",
                            models.PositiveIntegerField(blank=True, null=True),
                        ),
                        (
                            "broker",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="stats_samples",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_brokerstatssample",
                        "ordering": ["broker", "sampled_at"],
                        "indexes": [
                            models.Index(
                                fields=["broker", "sampled_at"],
                                name="stats_sample_time",
                            )
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="ClientEvent",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        (
                            "kind",
                            models.CharField(
                                choices=[
                                    ("disconnect", "Disconnected"),
                                    ("refused", "Refused"),
                                ],
                                max_length=10,
                            ),
                        ),
                        ("client_id", models.CharField(blank=True, max_length=65535)),
                        ("address", models.CharField(blank=True, max_length=300)),
                        ("username", models.CharField(blank=True, max_length=65535)),
                        ("reason", models.CharField(blank=True, max_length=300)),
                        ("at", models.DateTimeField()),
                        ("received_at", models.DateTimeField()),
                        (
                            "broker",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="client_events",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_clientevent",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(
                                fields=["broker", "kind", "-id"],
                                name="client_event_newest",
                            ),
                            models.Index(
                                fields=["broker", "kind", "received_at"],
                                name="client_event_time",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="ConnectedClient",
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
                        ("client_id", models.CharField(max_length=65535)),
                        ("address", models.CharField(blank=True, max_length=300)),
                        ("username", models.CharField(blank=True, max_length=65535)),
                        ("protocol", models.CharField(blank=True, max_length=8)),
                        ("clean_session", models.BooleanField(blank=True, null=True)),
                        (
                            "keepalive",
                            models.PositiveIntegerField(blank=True, null=True),
                        ),
                        ("connected_at", models.DateTimeField()),
                        ("seen_at", models.DateTimeField()),
                        (
                            "broker",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="connected_clients",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_connectedclient",
                        "ordering": ["broker", "client_id"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("broker", "client_id"),
                                name="connected_client_unique",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
