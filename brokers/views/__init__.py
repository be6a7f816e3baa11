"""Broker pages, by area: connections (list, edit, test, the broker page), publish,
subscriptions. Other apps contribute the broker page's other tabs (brokers.tabs)."""
