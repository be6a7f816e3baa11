# Runtime leases, runtime workers and dead letters moved to the runtime app
# (runtime 0001): state only, their tables stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0012_move_action_runs_to_actions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="RuntimeLease"),
                migrations.DeleteModel(name="RuntimeWorker"),
                migrations.DeleteModel(name="DeadLetter"),
            ],
            database_operations=[],
        ),
    ]
