"""Cloud side for a broker that is not AWS IoT Core: each report/totals message -> one S3 object.

(With AWS IoT Core, the topic rule in aws/ does this job without any code.)

    S3_BUCKET=my-bucket S3_PREFIX=engagement CONSUMER_MQTT_HOST=broker.example \\
    CONSUMER_CA_FILE=ca.pem CONSUMER_CERT_FILE=c.pem CONSUMER_KEY_FILE=c.key \\
    python -m services.mqtt_bridge.s3_consumer

Objects: <prefix>/<device>/<type>/<session>/<id>.json. The key is derived from the message
id, so a message delivered twice (QoS 1 is at-least-once) is written once: dedupe by id.
Parts of a split report are kept under <prefix>/_parts/<id>/ until all have arrived, then
the whole envelope is written and the parts deleted; parts surviving a consumer restart
still count, as they live in the bucket. `... s3_consumer reassemble` does the joining
once for the parts that the AWS IoT parts rule wrote (aws/README.md).

The storage is behind a small `ObjectStore` interface: `S3Store` (boto3) in production,
`DirectoryStore` (a real local directory) in tests and for local runs: AWS cannot run on
the build machine, so S3 itself is never called in tests.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any, Protocol

from shared.data import envelope

log = logging.getLogger("s3_consumer")


class ObjectStore(Protocol):
    def exists(self, key: str) -> bool: ...
    def put(self, key: str, data: bytes) -> None: ...
    def get(self, key: str) -> bytes: ...
    def list(self, prefix: str) -> list[str]: ...
    def delete(self, key: str) -> None: ...


class DirectoryStore:
    """A local directory standing in for an S3 bucket (AWS cannot run here)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    def put(self, key: str, data: bytes) -> None:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)  # atomic, like an S3 PUT: readers never see half an object

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def list(self, prefix: str) -> list[str]:
        base = self.root / prefix
        if not base.is_dir():
            return []
        return sorted(str(p.relative_to(self.root)) for p in base.rglob("*") if p.is_file()
                      and not p.name.endswith(".tmp"))

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)


class S3Store:
    """boto3 S3 (credentials from the usual AWS chain: role, env, profile; never logged)."""

    def __init__(self, bucket: str) -> None:
        import boto3  # only the cloud half needs boto3 (extra "cloud")

        self.bucket = bucket
        self.s3 = boto3.client("s3")

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.s3.head_object(Bucket=self.bucket, Key=key)
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise

    def put(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType="application/json")

    def get(self, key: str) -> bytes:
        body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix):
            keys += [o["Key"] for o in page.get("Contents", [])]
        return keys

    def delete(self, key: str) -> None:
        self.s3.delete_object(Bucket=self.bucket, Key=key)


def _safe(part: Any) -> str:
    # Ids like "<session>:totals:3" stay readable; anything that could climb paths is replaced.
    return re.sub(r"[^A-Za-z0-9._:=-]", "_", str(part)) or "_"


class ReportStore:
    """Writes each message once (dedupe by id) and reassembles split reports."""

    def __init__(self, store: ObjectStore, prefix: str = "engagement") -> None:
        self.store = store
        self.prefix = prefix.strip("/")

    def key_for(self, doc: dict[str, Any]) -> str:
        return "/".join([self.prefix, _safe(doc.get("device_id")), _safe(doc["type"]),
                         _safe(doc.get("session")), _safe(doc["id"]) + ".json"])

    def handle(self, payload: bytes) -> str:
        """Store one message; returns "stored", "duplicate", "part" or "invalid"."""
        try:
            doc = json.loads(payload)
            if not isinstance(doc, dict) or doc.get("schema") != envelope.SCHEMA or not doc.get("id") \
                    or doc.get("type") not in envelope.TYPES:
                raise ValueError("not an envelope")
        except ValueError as exc:
            log.error("ignored a %d-byte message that is not an envelope: %s", len(payload), exc)
            return "invalid"
        if "parts" in doc:
            return self._handle_part(doc, payload)
        key = self.key_for(doc)
        if self.store.exists(key):
            return "duplicate"
        self.store.put(key, payload)
        return "stored"

    def _handle_part(self, doc: dict[str, Any], payload: bytes) -> str:
        final = self.key_for(doc)
        if self.store.exists(final):
            return "duplicate"
        part_dir = f"{self.prefix}/_parts/{_safe(doc['id'])}/"
        part_key = f"{part_dir}{int(doc['part']):04d}.json"
        if self.store.exists(part_key):
            return "duplicate"
        self.store.put(part_key, payload)
        return "stored" if self.reassemble(part_dir) else "part"

    def reassemble(self, part_dir: str) -> bool:
        """Join the parts under `part_dir` when all are there; True when the whole was written.

        Part numbers are read from the parts themselves, not from their keys, so the parts
        the AWS IoT rule writes (aws/topic_rule_parts.json) are joined the same way.
        """
        keys = self.store.list(part_dir)
        docs = [json.loads(self.store.get(k)) for k in keys]
        if not docs or len({d["part"] for d in docs}) < int(docs[0]["parts"]):
            return False
        whole = envelope.join_parts(list({d["part"]: d for d in docs}.values()))
        self.store.put(self.key_for(whole), json.dumps(whole, separators=(",", ":")).encode())
        for k in keys:
            self.store.delete(k)
        return True

    def reassemble_all(self) -> int:
        """Scan <prefix>/_parts/ (where the AWS IoT parts rule writes); returns reports completed."""
        dirs = {k.rsplit("/", 1)[0] + "/" for k in self.store.list(f"{self.prefix}/_parts/")}
        return sum(self.reassemble(d) for d in sorted(dirs))


def main() -> int:  # pragma: no cover - needs a real cloud broker and bucket
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from services.mqtt_bridge.certs import tls_context
    from shared.ops.config import log_level_of_environment
    from shared.ops.logs import setup_logging

    setup_logging("s3_consumer", log_level_of_environment())
    env = os.environ
    local_dir = env.get("S3_LOCAL_DIR")
    store: ObjectStore = DirectoryStore(local_dir) if local_dir else S3Store(env["S3_BUCKET"])
    reports = ReportStore(store, env.get("S3_PREFIX", "engagement"))
    if sys.argv[1:] == ["reassemble"]:  # AWS IoT path: join the parts the parts rule wrote
        log.info("reassembled %d split reports", reports.reassemble_all())
        return 0
    topic = env.get("CONSUMER_TOPIC", "engagement/+/+")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=env.get("CONSUMER_CLIENT_ID", "s3-consumer"),
                         clean_session=False, manual_ack=True)
    if env.get("CONSUMER_CA_FILE"):
        client.tls_set_context(tls_context(env["CONSUMER_CA_FILE"], env["CONSUMER_CERT_FILE"],
                                           env["CONSUMER_KEY_FILE"]))

    def on_connect(c: mqtt.Client, *_: object) -> None:
        c.subscribe(topic, qos=1)

    def on_message(c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        if msg.topic.endswith("/status"):
            c.ack(msg.mid, msg.qos)
            return
        try:
            outcome = reports.handle(bytes(msg.payload))  # paho's payload is bytes: no copy
        except Exception:
            log.exception("could not store a message from %s; not acknowledged", msg.topic)
            return  # redelivered after the next reconnect
        log.info("%s: %s", msg.topic, outcome)
        c.ack(msg.mid, msg.qos)

    client.on_connect = on_connect
    client.on_message = on_message
    client.connect(env.get("CONSUMER_MQTT_HOST", "127.0.0.1"), int(env.get("CONSUMER_MQTT_PORT", "8883")))
    client.loop_forever(retry_first_connection=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
