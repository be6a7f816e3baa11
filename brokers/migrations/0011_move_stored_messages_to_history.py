# Stored messages and the topic index moved to the history app (history 0001):
# state only, their tables stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0010_move_sys_stats_to_observe"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="StoredMessage"),
                migrations.DeleteModel(name="Topic"),
            ],
            database_operations=[],
        ),
    ]
