"""REST API of the brokers app (connections, subscriptions, publish templates)."""
