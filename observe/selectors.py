"""Which brokers the portal reads `$SYS/#` from (the stats and the client log
both ask)."""

from __future__ import annotations

from django.db.models import Q

from acl.choices import Management
from brokers.models import Broker


def managed_q() -> Q:
    """Brokers the portal manages (Dynamic Security or files): it subscribes
    `$SYS/#` on them whatever `collect_sys_stats` says."""
    return Q(management__management__in=[Management.DYNSEC, Management.FILES])


def collects_sys_stats(broker: Broker) -> bool:
    """Whether the runtime subscribes `$SYS/#` on this broker."""
    if broker.collect_sys_stats:
        return True
    return Broker.objects.filter(managed_q(), pk=broker.pk).exists()
