"""MQTT bridge: local Mosquitto -> durable SQLite queue -> AWS IoT Core (TLS, QoS 1)."""
