"""MQTT bridge: the local broker's reports and totals -> durable queue -> AWS IoT Core.

Local side: subscribes (QoS 1, persistent session, manual acks) to engagement/<DEVICE_ID>/
report and /totals. The reporter publishes totals every MQTT_TOTALS_INTERVAL seconds (10 s by
default) and one report per session. A message is validated, committed to the SQLite queue
and only then acknowledged to the local broker; a bad payload goes to the dead-letter table.

Cloud side: AWS IoT Core, MQTT over TLS 1.2 with the device certificate, client id = device
id, QoS 1. A queued row is deleted only after the cloud PUBACK. Each cloud connection uses a
fresh paho client, so only our queue decides what is resent (no second hidden queue).

Failures:
- broker unreachable: reconnect with exponential backoff (capped); logged when the reason
  changes, not on every attempt.
- certificate problem (bad/expired files at start-up, or the broker refusing our client
  certificate or presenting one our CA does not trust at the handshake): ONE clear error
  line, then exit code 3. Retrying cannot fix it; the orchestrator's restart policy retries
  slowly, and the queue on disk keeps every accepted message meanwhile.

Both brokers get a retained "online" status on connect and an "offline" last will.
"""

from __future__ import annotations

import ssl
import time
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode
from prometheus_client import Counter, Gauge

from services.mqtt_bridge import certs
from shared.bus.backoff import Backoff
from shared.data import envelope
from shared.data.durable_queue import DurableQueue
from shared.ops.service import EXIT_GAVE_UP, Service
from shared.ops.settings import MqttBridgeSettings

RECEIVED = Counter("engagement_mqtt_bridge_received_total", "Messages received from the local broker", ["type"])
QUEUED = Gauge("engagement_mqtt_bridge_queued_messages", "Rows waiting in the store-and-forward queue")
FORWARDED = Counter("engagement_mqtt_bridge_forwarded_total", "Rows the cloud broker acknowledged", ["type"])
FAILED = Counter("engagement_mqtt_bridge_failed_total",
                 "Cloud publishes or connects that failed (retried later)", ["reason"])
DEAD_LETTERED = Counter("engagement_mqtt_bridge_dead_lettered_total",
                        "Local payloads kept aside in the dead-letter table", ["reason"])
SPLIT = Counter("engagement_mqtt_bridge_split_total", "Messages split into parts for the payload limit")
OLDEST_AGE = Gauge("engagement_mqtt_bridge_oldest_queued_age_seconds", "Age of the oldest queued row")
CONNECTED = Gauge("engagement_mqtt_bridge_connected", "1 when connected to the broker", ["broker"])

EXIT_CERTIFICATE = EXIT_GAVE_UP  # a certificate the broker refuses: retrying cannot help
JITTER = 0.2  # many devices must not retry in step
DEAD_LETTER_KEEP_BYTES = 64 * 1024  # of a dead-lettered payload: enough to tell what it was


class Link:
    """Connection bookkeeping of one broker: state gauge, backoff, log only on change."""

    def __init__(self, name: str, log: Any, base: float, cap: float) -> None:
        self.name, self.log = name, log
        self.backoff = Backoff(base, cap, jitter=JITTER)
        self.next_attempt = 0.0
        self.last_error = ""
        self.up = False
        CONNECTED.labels(name).set(0)

    def failed(self, error: str) -> None:
        self.up = False
        CONNECTED.labels(self.name).set(0)
        delay = self.backoff.next_delay()
        self.next_attempt = time.monotonic() + delay
        if error != self.last_error:  # one line per distinct reason, not one per attempt
            self.log.warning("%s broker: %s; retrying with backoff (now %.1f s, cap %.0f s)",
                             self.name, error, delay, self.backoff.cap)
            self.last_error = error

    def connected(self) -> None:
        self.up = True
        CONNECTED.labels(self.name).set(1)
        self.log.info("%s broker: connected%s", self.name,
                      f" after {self.backoff.failures} failed attempts" if self.backoff.failures else "")
        self.backoff.reset()
        self.last_error = ""


class MqttBridgeService(Service[MqttBridgeSettings]):
    name = "mqtt_bridge"
    tick_interval = 1.0

    def __init__(self, settings: MqttBridgeSettings) -> None:
        super().__init__(settings)
        s = settings
        self.device_id = s.device_id
        self.local_topics = [envelope.topic(s.device_id, kind) for kind in envelope.TYPES]
        self.local_status = f"engagement/{s.device_id}/bridge/status"
        self.cloud_prefix = f"{s.cloud_topic_prefix}/{s.device_id}"
        self.cloud_status = f"{self.cloud_prefix}/status"
        self.exit_code = 0
        self.queue: DurableQueue | None = None
        self.local_link = Link("local", self.log, s.bridge_retry_base_seconds, s.bridge_retry_max_seconds)
        self.cloud_link = Link("cloud", self.log, s.bridge_retry_base_seconds, s.bridge_retry_max_seconds)
        self.local: mqtt.Client | None = None
        self.cloud: mqtt.Client | None = None
        self.inflight: dict[int, tuple[int, str, float]] = {}  # mid -> (seq, kind, sent at)
        self.resend = Backoff(s.bridge_retry_base_seconds, s.bridge_retry_max_seconds, jitter=JITTER)
        self.local_started = False

    # --- start-up -------------------------------------------------------------------
    def run(self) -> int:
        s = self.settings
        try:
            if not s.cloud_mqtt_host:
                raise certs.CertificateProblem("CLOUD_MQTT_HOST is not set")
            expiry = certs.check_files(s.cloud_ca_file, s.cloud_cert_file, s.cloud_key_file)
            for kind in envelope.TYPES:
                envelope.check_topic(f"{self.cloud_prefix}/{kind}")
        except (certs.CertificateProblem, ValueError) as exc:
            self.log.error("cannot start: %s", exc)
            return EXIT_CERTIFICATE
        if s.bridge_max_payload_bytes > envelope.AWS_MAX_PAYLOAD_BYTES:
            self.log.warning("BRIDGE_MAX_PAYLOAD_BYTES=%d is above AWS IoT Core's %d-byte limit: "
                             "only right for another broker", s.bridge_max_payload_bytes,
                             envelope.AWS_MAX_PAYLOAD_BYTES)
        days = (expiry.timestamp() - time.time()) / 86400
        (self.log.warning if days < 30 else self.log.info)("client certificate expires in %.0f days", days)
        code = super().run()
        return self.exit_code or code

    def setup(self) -> None:
        self.queue = DurableQueue(self.settings.bridge_queue_path)
        self.log.info("queue %s holds %d rows", self.settings.bridge_queue_path, self.queue.depth())
        self.local = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{self.device_id}-bridge",
                                 clean_session=False, manual_ack=True, reconnect_on_failure=False)
        self.local.will_set(self.local_status, "offline", qos=1, retain=True)
        self.local.on_connect = self._on_local_connect
        self.local.on_disconnect = self._on_local_disconnect
        self.local.on_message = self._on_local_message
        self.local.on_subscribe = self._on_local_subscribe

    # --- local broker ---------------------------------------------------------------
    def _on_local_connect(self, client: mqtt.Client, _u: object, flags: Any, reason: Any, _p: object) -> None:
        if reason.is_failure:
            self.local_link.failed(f"connection refused ({reason})")
            return
        self.local_link.connected()
        # Resubscribe on every connect: a broker that lost its sessions has forgotten us.
        client.subscribe([(t, 1) for t in self.local_topics])
        client.publish(self.local_status, "online", qos=1, retain=True)

    def _on_local_subscribe(self, _c: mqtt.Client, _u: object, _mid: int, reasons: list[ReasonCode],
                            _p: object) -> None:
        # Only from here on does the local broker route reports to us (and queue them for our
        # persistent session while we are away): "connected" alone is too early to rely on.
        if any(r.is_failure for r in reasons):
            self.log.error("local broker refused a subscription: %s", [str(r) for r in reasons])
        else:
            self.log.info("local broker: subscribed to %s", ", ".join(self.local_topics))

    def _on_local_disconnect(self, _c: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if not self.stop.is_set():
            self.local_link.failed(f"disconnected ({reason})")

    def _on_local_message(self, client: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        assert self.queue is not None
        try:
            self._accept(msg.topic, bytes(msg.payload))  # paho's payload is bytes: no copy
        except Exception as exc:  # disk full, I/O error: do NOT ack, the broker redelivers it
            FAILED.labels("queue_write").inc()
            self.log.error("could not store a message from %s (%s); not acknowledged, reconnecting "
                           "so the broker redelivers it", msg.topic, exc)
            client.disconnect()
            return
        client.ack(msg.mid, msg.qos)

    def _accept(self, topic: str, payload: bytes) -> None:
        """Queue one local message, or set it aside in the dead-letter table when it cannot be
        forwarded. Either way it is acknowledged once; only a failing queue write raises (and
        leaves it unacknowledged, for the broker to redeliver)."""
        assert self.queue is not None
        try:
            env, parts = self._parse(topic, payload)
        except envelope.InvalidPayload as exc:
            # Only the head of a huge payload is kept: enough to see what it was, never the disk's worth.
            self.queue.dead_letter(topic, exc.reason, str(exc), payload[:DEAD_LETTER_KEEP_BYTES])
            DEAD_LETTERED.labels(exc.reason).inc()
            # Size and reason only: the payload may hold class data and stays in the table.
            self.log.error("dead-lettered a %d-byte payload from %s: %s", len(payload), topic, exc)
            return
        RECEIVED.labels(env.type).inc()
        if len(parts) > 1:
            SPLIT.inc()
            self.log.info("%s %s is %d bytes: split into %d parts", env.type, env.id, len(payload), len(parts))
        if not self.queue.enqueue(env.id, env.type, f"{self.cloud_prefix}/{env.type}", parts):
            self.log.info("%s %s already queued or forwarded: duplicate ignored", env.type, env.id)

    def _parse(self, topic: str, payload: bytes) -> tuple[envelope.Envelope, list[bytes]]:
        """The envelope and the payloads to send; InvalidPayload for anything else, at any size or depth."""
        s = self.settings
        limit = s.bridge_max_payload_bytes * s.bridge_max_parts
        if len(payload) > limit:  # more than the parts could carry: not even parsed
            raise envelope.InvalidPayload("too_large", f"{len(payload)} B is over {limit} B "
                                          f"(BRIDGE_MAX_PARTS x BRIDGE_MAX_PAYLOAD_BYTES)")
        try:
            env = envelope.parse(payload)
            if topic.rsplit("/", 1)[-1] != env.type:
                raise envelope.InvalidPayload("type_topic_mismatch", f"type {env.type} on {topic}")
            return env, envelope.split(env, s.bridge_max_payload_bytes, s.bridge_max_parts)
        except envelope.InvalidPayload:
            raise
        except Exception as exc:  # noqa: BLE001 - a payload must never be retried for a parse bug
            raise envelope.InvalidPayload("unparseable", f"{type(exc).__name__}: {exc}"[:200]) from None

    # --- cloud broker ---------------------------------------------------------------
    def _new_cloud_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=self.device_id,
                             clean_session=True, reconnect_on_failure=False)
        client.tls_set_context(certs.tls_context(s.cloud_ca_file, s.cloud_cert_file, s.cloud_key_file))
        client.will_set(self.cloud_status, "offline", qos=1, retain=True)
        client.max_inflight_messages_set(s.bridge_max_inflight)
        client.on_connect = self._on_cloud_connect
        client.on_disconnect = self._on_cloud_disconnect
        client.on_publish = self._on_cloud_publish
        return client

    def _on_cloud_connect(self, client: mqtt.Client, _u: object, flags: Any, reason: Any, _p: object) -> None:
        if reason.is_failure:
            FAILED.labels("connect").inc()
            self.cloud_link.failed(f"connection refused ({reason})")
            self.cloud = None  # a fresh client on the next attempt
            client.disconnect()
            return
        self.cloud_link.connected()
        client.publish(self.cloud_status, "online", qos=1, retain=True)

    def _on_cloud_disconnect(self, client: mqtt.Client, _u: object, _f: object, reason: Any, _p: object) -> None:
        if client is not self.cloud:
            return  # a client already given up on (refused CONNACK)
        if self.inflight:
            FAILED.labels("disconnected").inc(len(self.inflight))
        self.inflight.clear()  # still in the queue: resent on the next connection
        if not self.stop.is_set():
            self.cloud_link.failed(f"disconnected ({reason})")
        self.cloud = None

    def _on_cloud_publish(self, _c: mqtt.Client, _u: object, mid: int, reason: Any, _p: object) -> None:
        entry = self.inflight.pop(mid, None)
        if entry is None:
            return  # the status message, or a row already given up on
        assert self.queue is not None
        seq, kind, _ = entry
        if getattr(reason, "is_failure", False):
            FAILED.labels("puback_error").inc()
            self.queue.retry_later(seq, self.resend.next_delay())
            return
        self.queue.done(seq)
        self.resend.reset()
        FORWARDED.labels(kind).inc()

    # --- loop -----------------------------------------------------------------------
    def _ensure_local(self, now: float) -> None:
        assert self.local is not None
        if self.local.is_connected() or now < self.local_link.next_attempt:
            return
        s = self.settings
        try:
            if self.local_started:
                self.local.reconnect()  # same client: the broker redelivers unacknowledged messages
            else:
                self.local_started = True
                self.local.connect(s.mqtt_host, s.mqtt_port, keepalive=30)
            self.local_link.next_attempt = now + 5.0  # CONNACK should come before this
        except OSError as exc:
            self.local_link.failed(f"{s.mqtt_host}:{s.mqtt_port} unreachable ({exc})")

    def _ensure_cloud(self, now: float) -> None:
        if self.cloud is not None or now < self.cloud_link.next_attempt:
            return
        s = self.settings
        client = self._new_cloud_client()
        try:
            client.connect(s.cloud_mqtt_host, s.cloud_mqtt_port, keepalive=60)
        except ssl.SSLError as exc:
            refusal = certs.describe_refusal(exc)
            if refusal:
                self.log.error("TLS handshake with %s:%s failed: %s. Exiting (code %d).",
                               s.cloud_mqtt_host, s.cloud_mqtt_port, refusal, EXIT_CERTIFICATE)
                self.exit_code = EXIT_CERTIFICATE
                self.stop.set()
                return
            FAILED.labels("connect").inc()
            self.cloud_link.failed(f"TLS error ({exc})")
            return
        except OSError as exc:
            FAILED.labels("connect").inc()
            self.cloud_link.failed(f"{s.cloud_mqtt_host}:{s.cloud_mqtt_port} unreachable ({exc})")
            return
        self.cloud = client

    def _pump(self, now: float) -> None:
        assert self.queue is not None
        client = self.cloud
        if client is None or not self.cloud_link.up:
            return
        wall = time.time()
        for mid, (seq, _kind, sent) in list(self.inflight.items()):
            if wall - sent > self.settings.bridge_ack_timeout:
                del self.inflight[mid]
                FAILED.labels("ack_timeout").inc()
                self.queue.retry_later(seq, self.resend.next_delay())
        room = self.settings.bridge_max_inflight - len(self.inflight)
        if room <= 0:
            return
        busy = {seq for seq, _, _ in self.inflight.values()}
        for row in self.queue.due(room, busy):
            info = client.publish(row.topic, row.payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                FAILED.labels("publish").inc()
                break
            self.inflight[info.mid] = (row.seq, row.kind, wall)

    def loop(self) -> None:
        assert self.local is not None and self.queue is not None
        next_tick = 0.0
        while not self.stop.is_set():
            now = time.monotonic()
            self._ensure_local(now)
            self._ensure_cloud(now)
            if self.stop.is_set():
                break
            # loop() returns at once without a socket; a lost connection calls on_disconnect.
            local_rc = self.local.loop(0.02)
            if self.cloud is not None:
                self.cloud.loop(0.02)
            self._pump(now)
            if local_rc == mqtt.MQTT_ERR_NO_CONN and self.cloud is None:
                self.stop.wait(0.1)
            if now >= next_tick:
                QUEUED.set(self.queue.depth())
                OLDEST_AGE.set(self.queue.oldest_age())
                next_tick = now + self.tick_interval

    def on_stop(self) -> None:
        # A clean stop says "offline" itself: the broker sends the will only on a lost connection.
        for client, topic in ((self.cloud, self.cloud_status), (self.local, self.local_status)):
            if client is not None and client.is_connected():
                try:
                    client.publish(topic, "offline", qos=1, retain=True)
                    client.loop(0.2)
                    client.disconnect()
                except (OSError, ValueError):
                    pass
        if self.queue is not None:
            self.log.info("stopping with %d rows queued", self.queue.depth())
            self.queue.close()
