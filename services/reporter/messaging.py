"""Publishing reports and running totals to the local MQTT broker (MESSAGING=1).

Payloads are JSON envelopes (shared/data/envelope.py) that the MQTT bridge (services/mqtt_bridge)
validates and forwards to the cloud. The id is stable per message ("<session>:report",
"<session>:totals:<n>") so the cloud side can drop a duplicate. QoS 1, and a publish
waits for the broker's PUBACK; a broker that is down is logged and counted, never fatal.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from prometheus_client import Counter

from shared.data.envelope import build, topic

MQTT_PUBLISHED = Counter("engagement_mqtt_published_total", "Messages the local broker acknowledged", ["type"])
MQTT_ERRORS = Counter("engagement_mqtt_errors_total", "Messages not acknowledged by the local broker", ["type"])

log = logging.getLogger("reporter.mqtt")


class Publisher:
    def __init__(self, host: str, port: int, device_id: str, ack_timeout: float = 10.0, role: str = "reporter") -> None:
        """`role`: the MQTT client id's suffix. A broker lets one connection hold a client id: an `engagement
        outbox flush` as "reporter" would push a running reporter of the same device off the broker."""
        self.device_id = device_id
        self.ack_timeout = ack_timeout
        self.connected = threading.Event()
        self.closing = False
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{device_id}-{role}",
                                  clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.reconnect_delay_set(1, 30)
        # connect_async + loop_start: a broker that is down now is retried in the background.
        self.client.connect_async(host, port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any, props: object) -> None:
        if reason.is_failure:
            log.error("MQTT broker refused the connection: %s", reason)
            return
        self.connected.set()
        log.info("connected to the local MQTT broker")

    def _on_disconnect(self, client: mqtt.Client, userdata: object, flags: object, reason: Any,
                       props: object) -> None:
        self.connected.clear()
        if self.closing:  # our own disconnect at the end: nothing to warn of
            log.debug("disconnected from the local MQTT broker: %s", reason)
            return
        log.warning("disconnected from the local MQTT broker: %s", reason)

    def envelope(self, kind: str, message_id: str, session: str, body: dict[str, Any]) -> bytes:
        """The bytes published for one message (kept as they are in the outbox until sent)."""
        return json.dumps(build(kind, message_id, self.device_id, session, body), separators=(",", ":")).encode()

    def topic(self, kind: str) -> str:
        return topic(self.device_id, kind)

    def publish(self, kind: str, message_id: str, session: str, body: dict[str, Any],
                timeout: float | None = None) -> bool:
        """Publish one envelope with QoS 1 and wait for PUBACK; False (counted) if none came.

        `timeout` bounds the wait for a connection and for PUBACK (default ack_timeout):
        periodic totals pass a short one so a broker that is down never stalls the overlay.
        """
        return self.send(kind, message_id, self.envelope(kind, message_id, session, body), timeout)

    def send(self, kind: str, message_id: str, payload: bytes, timeout: float | None = None) -> bool:
        """Publish ready envelope bytes (QoS 1) and wait for PUBACK; False (counted) if none came."""
        timeout = self.ack_timeout if timeout is None else timeout
        if not self.connected.wait(timeout):
            MQTT_ERRORS.labels(kind).inc()
            log.error("MQTT %s %s not published: no connection to the local broker", kind, message_id)
            return False
        try:
            info = self.client.publish(self.topic(kind), payload, qos=1)
            info.wait_for_publish(timeout)
        except (RuntimeError, ValueError) as exc:
            MQTT_ERRORS.labels(kind).inc()
            log.error("MQTT %s %s not published: %s", kind, message_id, exc)
            return False
        if not info.is_published():
            MQTT_ERRORS.labels(kind).inc()
            log.error("MQTT %s %s: no PUBACK within %.1f s", kind, message_id, timeout)
            return False
        MQTT_PUBLISHED.labels(kind).inc()
        log.debug("published %s %s", kind, message_id)
        return True

    def close(self) -> None:
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()
