from django.db import migrations, models


def bind_stored_admin_passwords(apps, schema_editor):
    """Existing admin passwords are bound to where their broker points today."""
    ManagedBroker = apps.get_model("acl", "ManagedBroker")
    for managed in ManagedBroker.objects.exclude(management_password="").select_related(
        "broker"
    ):
        broker = managed.broker
        managed.management_bound_to = {
            "host": broker.host,
            "port": int(broker.port),
            "fallback_hosts": list(broker.fallback_hosts or ()),
            "use_tls": bool(broker.use_tls),
            "tls_insecure": bool(broker.tls_insecure),
            "ca_cert": (broker.ca_cert or "").replace("\r\n", "\n").strip(),
        }
        managed.save(update_fields=["management_bound_to"])


class Migration(migrations.Migration):
    dependencies = [
        ("acl", "0001_initial"),
        ("brokers", "0009_history_payload_cap"),
    ]

    operations = [
        migrations.AddField(
            model_name="managedbroker",
            name="management_bound_to",
            field=models.JSONField(blank=True, default=dict, editable=False),
        ),
        migrations.RunPython(bind_stored_admin_passwords, migrations.RunPython.noop),
    ]
