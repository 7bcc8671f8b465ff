"""An MQTT subscriber for tests: every envelope on engagement/<device>/# of one broker."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from shared.data import envelope


class Collector:
    """Every message on engagement/<device>/# of one broker."""

    def __init__(self, port: int, device: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self.lock = threading.Lock()
        subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"col-{uuid.uuid4().hex[:8]}")
        self.client.on_connect = lambda c, *_: c.subscribe(f"engagement/{device}/#", qos=1)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert subscribed.wait(10)

    def _on_message(self, _c: object, _u: object, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload))

    def ids(self) -> list[str]:
        with self.lock:
            return sorted(envelope.parse(p).id for t, p in self.messages if t.rsplit("/", 1)[-1] in envelope.TYPES)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
