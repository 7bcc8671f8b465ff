from tests.mqtt_bridge.helpers import certs, cloud_broker, device  # noqa: F401 - pytest fixtures
