# Action runs moved to the actions app (actions 0001): state only, the table
# brokers_actionrun stays as it is.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("brokers", "0011_move_stored_messages_to_history"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name="ActionRun",
                ),
            ],
            database_operations=[],
        ),
    ]
