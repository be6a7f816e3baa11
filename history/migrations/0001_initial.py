# The stored messages and the topic index, moved from brokers with their tables
# (Meta.db_table): state only, no table is created or touched.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("brokers", "0011_move_stored_messages_to_history"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="StoredMessage",
                    fields=[
                        ("id", models.BigAutoField(primary_key=True, serialize=False)),
                        ("topic", models.TextField()),
                        ("text", models.TextField(blank=True, null=True)),
                        ("data", models.BinaryField(blank=True, null=True)),
                        ("qos", models.PositiveSmallIntegerField(default=0)),
                        ("retain", models.BooleanField(default=False)),
                        ("properties", models.JSONField(blank=True, null=True)),
                        ("received_at", models.DateTimeField()),
                        (
                            "payload_size",
                            models.PositiveBigIntegerField(blank=True, null=True),
                        ),
                        ("payload_truncated", models.BooleanField(default=False)),
                        (
                            "broker",
                            models.ForeignKey(
                                db_constraint=False,
                                db_index=False,
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_storedmessage",
                        "ordering": ["-id"],
                        "indexes": [
                            models.Index(
                                fields=["broker", "-id"], name="message_broker_newest"
                            ),
                            models.Index(
                                fields=["broker", "topic", "-id"],
                                name="message_broker_topic",
                            ),
                            models.Index(
                                fields=["broker", "received_at"],
                                name="message_broker_time",
                            ),
                        ],
                    },
                ),
                migrations.CreateModel(
                    name="Topic",
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
                        ("messages", models.PositiveBigIntegerField(default=0)),
                        ("last_payload", models.BinaryField(blank=True, null=True)),
                        ("last_seen_at", models.DateTimeField(blank=True, null=True)),
                        ("retained", models.BooleanField(default=False)),
                        (
                            "description",
                            models.CharField(
                                blank=True, max_length=500, verbose_name="description"
                            ),
                        ),
                        (
                            "unit",
                            models.CharField(
                                blank=True, max_length=32, verbose_name="unit"
                            ),
                        ),
                        (
                            "broker",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="topics",
                                to="brokers.broker",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "brokers_topic",
                        "ordering": ["broker", "topic"],
                        "constraints": [
                            models.UniqueConstraint(
                                fields=("broker", "topic"), name="topic_unique"
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
