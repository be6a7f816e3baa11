"""The portal's own Mosquitto and the demo devices that publish to it, both run by
`manage.py serve` (registered from this app's AppConfig)."""
