"""Ingest benchmark: how fast messages are stored, next to two references.

    createdb -h 127.0.0.1 -U postgres mqttadmin_bench   # once
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/mqttadmin_bench \\
        .venv/bin/python benchmarks/ingest.py --messages 100000 --qos 0

`--broker-limits default` runs a Mosquitto as users have it (20 messages in
flight per client, 1,000 queued, the rest dropped) instead of the tuned one
(1,000 in flight, unbounded queue); `--protocol 3.1.1|5` is the portal's
connection's protocol. Without DATABASE_URL the runtime stores into the embedded
SQLite database of `make run` (a file of its own here) and the naive reference is
left out (it needs PostgreSQL).

Starts its own Mosquitto, publishes N small JSON messages with `mosquitto_pub -l`
and measures, in the same run:
  (a) `mosquitto_sub -C N > /dev/null` on the same stream (the ceiling);
  (b) a naive subscriber that inserts each message in its own transaction;
  (c) the portal's MQTT runtime storing them (history rows, topic index, counters).
It prints messages per second for each, the ratios, lost and duplicated messages,
and the peak memory of the runtime's process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from benchmarks.common import (
    ROOT,
    Mosquitto,
    peak_rss_mib,
    publish_lines,
    setup_django,
)

TOPIC = "bench/data"


def write_lines(count: int, path: Path) -> None:
    with path.open("w") as handle:
        for seq in range(count):
            handle.write(json.dumps({"seq": seq, "v": seq % 100, "unit": "C"}) + "\n")


def run_mosquitto_sub(port: int, lines: Path, count: int, qos: int) -> dict[str, Any]:
    """The reference subscriber on the same stream. It too can lose messages on a
    broker at default limits, so it is read until it has them all or the stream
    has been quiet for 3 s, and what it received is reported."""
    sub = subprocess.Popen(
        [
            "mosquitto_sub",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
            "-t",
            "bench/#",
            "-q",
            str(qos),
            "-C",
            str(count),
        ],
        stdout=subprocess.PIPE,
    )
    assert sub.stdout is not None
    state = {"received": 0, "last": time.monotonic()}

    def read() -> None:
        assert sub.stdout is not None
        for _line in sub.stdout:
            state["received"] += 1
            state["last"] = time.monotonic()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)  # let it subscribe
    started = time.monotonic()
    publish_lines(port, TOPIC, lines, qos)
    while reader.is_alive() and time.monotonic() - state["last"] < 3:
        reader.join(0.2)
    sub.kill()
    sub.wait(timeout=10)
    elapsed = max(state["last"] - started, 1e-6)
    return {"rate": state["received"] / elapsed, "elapsed": elapsed, **state}


def run_child(
    mode: str, port: int, lines: Path, count: int, qos: int, protocol: str = "3.1.1"
) -> dict[str, Any]:
    child = subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--child",
            mode,
            "--port",
            str(port),
            "--messages",
            str(count),
            "--qos",
            str(qos),
            "--protocol",
            protocol,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert child.stdin and child.stdout
    ready = child.stdout.readline().strip()
    if ready != "ready":
        child.kill()
        raise SystemExit(f"{mode} child failed to start: {ready!r}")
    started = time.time()
    child.stdin.write(f"{started}\n")
    child.stdin.flush()
    publish_lines(port, TOPIC, lines, qos)
    output = child.stdout.read()
    child.wait(timeout=600)
    return json.loads(output.strip().splitlines()[-1])


# --- children -------------------------------------------------------------------------


def child_naive(port: int, count: int, qos: int) -> None:
    """One INSERT and one COMMIT per message, as a first attempt would do."""
    import threading

    import paho.mqtt.client as mqtt
    import psycopg

    url = os.environ["DATABASE_URL"]
    db = psycopg.connect(url, autocommit=True)
    db.execute("CREATE TABLE IF NOT EXISTS bench_naive (topic text, payload text)")
    db.execute("TRUNCATE bench_naive")
    done = threading.Event()
    state = {"n": 0, "last": time.time()}
    subscribed = threading.Event()

    def on_connect(
        client: Any, userdata: Any, flags: Any, reason: Any, props: Any
    ) -> None:
        client.subscribe("bench/#", qos)

    def on_subscribe(*args: Any) -> None:
        subscribed.set()

    def on_message(client: Any, userdata: Any, message: Any) -> None:
        with db.transaction():
            db.execute(
                "INSERT INTO bench_naive VALUES (%s, %s)",
                (message.topic, message.payload.decode()),
            )
        state["n"] += 1
        state["last"] = time.time()
        if state["n"] >= count:
            done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="bench-naive")
    client.on_connect, client.on_subscribe, client.on_message = (
        on_connect,
        on_subscribe,
        on_message,
    )
    client.connect("127.0.0.1", port)
    client.loop_start()
    subscribed.wait(10)
    print("ready", flush=True)
    started = float(sys.stdin.readline())
    while not done.wait(1):
        if time.time() - state["last"] > 30:
            break
    client.loop_stop()
    (stored,) = db.execute("SELECT count(*) FROM bench_naive").fetchone() or (0,)
    db.execute("DROP TABLE bench_naive")
    elapsed = state["last"] - started
    print(
        json.dumps(
            {
                "rate": stored / elapsed,
                "elapsed": elapsed,
                "stored": stored,
                "peak_rss_mib": peak_rss_mib(os.getpid()),
            }
        )
    )


def child_runtime(port: int, count: int, qos: int, protocol: str) -> None:
    """The portal's runtime, in a process of its own, storing into DATABASE_URL."""
    setup_django()
    from django.core.management import call_command
    from django.db import connection

    from brokers import services
    from brokers.models import BrokerStatus
    from history.models import StoredMessage
    from mqttadmin.models import Product
    from runtime.manager import Runtime

    call_command("migrate", verbosity=0)
    Product.objects.filter(slug="ingest-benchmark").delete()
    product = services_product()
    broker = services.broker_create(
        actor=None,
        product=product,
        name="bench",
        host="127.0.0.1",
        port=port,
        clean_start=True,
        protocol="5" if protocol == "5" else "3.1.1",
    )
    services.subscription_create(
        actor=None, broker=broker, name="bench", topic_filter="bench/#", qos=qos
    )
    runtime = Runtime(owner="benchmark")
    runtime.start()
    deadline = time.time() + 20
    while time.time() < deadline:
        status = BrokerStatus.objects.get(broker=broker)
        if status.state == "connected" and status.subscribed_topics_count >= 1:
            break
        time.sleep(0.1)
    else:
        print("runtime did not connect", flush=True)
        raise SystemExit(1)
    time.sleep(0.5)
    print("ready", flush=True)
    started = float(sys.stdin.readline())
    stored, last_change, finished = 0, time.time(), time.time()
    while stored < count and time.time() - last_change < 30:
        # Often enough that a burst of a second or two is timed within 5%; a count
        # of an indexed table costs the runtime little.
        time.sleep(0.05)
        now_stored = StoredMessage.objects.filter(broker=broker).count()
        if now_stored != stored:
            stored, last_change = now_stored, time.time()
            finished = last_change
    peak = peak_rss_mib(os.getpid())
    runtime.stop()
    texts = StoredMessage.objects.filter(broker=broker).values_list("text", flat=True)
    distinct = len({json.loads(text)["seq"] for text in texts.iterator() if text})
    connection.close()
    checks = check_history(broker)
    product.delete()
    elapsed = finished - started
    print(
        json.dumps(
            {
                "rate": stored / elapsed,
                "elapsed": elapsed,
                "stored": stored,
                "distinct": distinct,
                "peak_rss_mib": peak,
                **checks,
            }
        )
    )


def check_history(broker: Any) -> dict[str, Any]:
    """After the run: history is in publish order (newest first is the reverse
    of the sequence), the CSV and NDJSON exports stream every message, and the
    topic index counts them all."""
    from history.export import export_csv, export_ndjson
    from history.models import Topic
    from history.queries import HistoryQuery, messages_for

    newest_first = messages_for(broker, HistoryQuery()).order_by("-id")
    texts = newest_first.values_list("text", flat=True)
    # Every message the benchmark publishes is JSON text (never binary).
    seqs = [json.loads(text)["seq"] for text in texts if text is not None]
    assert len(seqs) == len(texts)
    oldest_first = seqs[::-1]
    in_order = all(a <= b for a, b in itertools.pairwise(oldest_first))
    csv_rows = sum(chunk.count("\n") for chunk in export_csv(newest_first)) - 1
    ndjson_rows = sum(1 for _line in export_ndjson(newest_first))
    topic = Topic.objects.filter(broker=broker, topic=TOPIC).first()
    return {
        "in_order": in_order,
        "exported_csv_rows": csv_rows,
        "exported_ndjson_rows": ndjson_rows,
        "topic_tree_messages": topic.messages if topic else 0,
    }


def services_product() -> Any:
    from mqttadmin.models import Product

    return Product.objects.create(name="Ingest benchmark", slug="ingest-benchmark")


# --- main -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--naive-messages", type=int, default=10_000)
    parser.add_argument("--qos", type=int, choices=[0, 1], default=0)
    parser.add_argument("--port", type=int)
    parser.add_argument("--child", choices=["naive", "runtime"])
    parser.add_argument(
        "--broker-limits",
        choices=["tuned", "default"],
        default="tuned",
        help="default: Mosquitto as installed (20 in flight, 1,000 queued)",
    )
    parser.add_argument("--protocol", choices=["3.1.1", "5"], default="3.1.1")
    args = parser.parse_args()
    on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
    if args.child == "naive":
        return child_naive(args.port, args.messages, args.qos)
    if args.child == "runtime":
        return child_runtime(args.port, args.messages, args.qos, args.protocol)

    if not on_postgres:
        # The embedded mode's own database, in a file of this run.
        os.environ.setdefault("MQTTADMIN_VAR_DIR", tempfile.mkdtemp())
    broker = Mosquitto(default_limits=args.broker_limits == "default")
    naive: dict[str, Any] = {"rate": 0.0, "stored": 0}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            lines = Path(tmp) / "lines.txt"
            write_lines(args.messages, lines)
            naive_lines = Path(tmp) / "naive.txt"
            write_lines(args.naive_messages, naive_lines)
            ceiling = run_mosquitto_sub(broker.port, lines, args.messages, args.qos)
            if on_postgres and args.naive_messages:
                naive = run_child(
                    "naive", broker.port, naive_lines, args.naive_messages, args.qos
                )
            portal = run_child(
                "runtime", broker.port, lines, args.messages, args.qos, args.protocol
            )
            dropped = broker.dropped()
    finally:
        broker.stop()
    lost = args.messages - portal.get("distinct", 0)
    duplicates = portal["stored"] - portal.get("distinct", 0)
    report = {
        "messages": args.messages,
        "qos": args.qos,
        "broker_limits": args.broker_limits,
        "protocol": args.protocol,
        "database": "postgresql" if on_postgres else "embedded sqlite",
        "mosquitto_sub_rate": round(ceiling["rate"]),
        "mosquitto_sub_received": ceiling["received"],
        "naive_rate": round(naive["rate"]),
        "naive_messages": naive["stored"],
        "runtime_rate": round(portal["rate"]),
        "runtime_vs_mosquitto_sub": round(portal["rate"] / ceiling["rate"], 3)
        if ceiling["rate"]
        else "mosquitto_sub received nothing",
        "runtime_vs_naive": round(portal["rate"] / naive["rate"], 1)
        if naive["rate"]
        else "not run",
        "stored": portal["stored"],
        "lost": lost,
        "duplicates": duplicates,
        "broker_dropped": dropped,
        "runtime_peak_rss_mib": round(portal["peak_rss_mib"], 1),
        "history_in_publish_order": portal["in_order"],
        "exported_csv_rows": portal["exported_csv_rows"],
        "exported_ndjson_rows": portal["exported_ndjson_rows"],
        "topic_tree_messages": portal["topic_tree_messages"],
    }
    width = max(len(k) for k in report)
    for key, value in report.items():
        print(f"{key:<{width}}  {value}")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
