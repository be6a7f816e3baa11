# $SYS statistics and connected clients moved to the observe app (observe 0001):
# state only, their tables stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0009_history_payload_cap"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveField(
                    model_name="brokersysstats",
                    name="broker",
                ),
                migrations.RemoveField(
                    model_name="clientevent",
                    name="broker",
                ),
                migrations.RemoveField(
                    model_name="connectedclient",
                    name="broker",
                ),
                migrations.DeleteModel(
                    name="BrokerStatsSample",
                ),
                migrations.DeleteModel(
                    name="BrokerSysStats",
                ),
                migrations.DeleteModel(
                    name="ClientEvent",
                ),
                migrations.DeleteModel(
                    name="ConnectedClient",
                ),
            ],
            database_operations=[],
        ),
    ]
