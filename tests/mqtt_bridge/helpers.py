"""Test helpers: certificates made with `cryptography`, a TLS Mosquitto standing in for AWS IoT
Core (require_certificate, TLS 1.2), the bridge as a real process, MQTT clients."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
LOCAL_HOST, LOCAL_PORT = "127.0.0.1", 1883


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    path.with_suffix(".pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    path.with_suffix(".key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))


def make_ca(cn: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_leaf(ca: tuple[x509.Certificate, ec.EllipticCurvePrivateKey], cn: str, server: bool,
              days: float = 30) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca[0].subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(days=2)).not_valid_after(now + dt.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))]), critical=False)
    return builder.sign(ca[1], hashes.SHA256()), key


@dataclass
class Certs:
    dir: Path

    def __getattr__(self, name: str) -> str:  # certs.ca_pem, certs.client_key, ...
        stem, ext = name.rsplit("_", 1)
        return str(self.dir / f"{stem}.{ext}")


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    d = tmp_path_factory.mktemp("certs")
    ca = make_ca("test IoT root CA")
    d.joinpath("ca.pem").write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    _write(d / "server", *make_leaf(ca, "127.0.0.1", server=True))
    _write(d / "client", *make_leaf(ca, "device", server=False))
    _write(d / "expired", *make_leaf(ca, "device", server=False, days=-1))
    rogue = make_ca("rogue CA")  # a CA the cloud broker does not trust
    _write(d / "rogue", *make_leaf(rogue, "device", server=False))
    d.joinpath("rogueca.pem").write_bytes(rogue[0].public_bytes(serialization.Encoding.PEM))
    return Certs(d)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Mosquitto:
    """A private Mosquitto process on a free port, from the config file `conf` a subclass writes."""

    what = "mosquitto"  # as the failure to start names it
    stderr: int = subprocess.DEVNULL

    def __init__(self, workdir: Path, name: str) -> None:
        self.port = free_port()
        self.conf = workdir / f"{name}.conf"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=self.stderr)
        assert wait_until(lambda: _port_open(self.port), 10), f"{self.what} did not start"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


class CloudBroker(Mosquitto):
    """A Mosquitto with TLS 1.2 and required client certificates: AWS IoT Core's stand-in."""

    what = "cloud mosquitto"
    stderr = subprocess.PIPE

    def __init__(self, certs: Certs, workdir: Path, persistent: bool = False) -> None:
        """persistent: sessions and their queued messages survive a restart (as AWS IoT Core's
        persistent sessions do), saved in workdir."""
        super().__init__(workdir, "cloud")
        persistence = f"persistence true\npersistence_location {workdir}/\n" if persistent else "persistence false\n"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            f"cafile {certs.ca_pem}\ncertfile {certs.server_pem}\nkeyfile {certs.server_key}\n"
            "require_certificate true\ntls_version tlsv1.2\nallow_anonymous true\n"
            f"{persistence}log_type error\nlog_dest stderr\n"
            # Run as the test's own user: the key files in the private tmp dir stay private.
            f"user {getpass.getuser()}\n")


@pytest.fixture
def cloud_broker(certs: Certs, tmp_path: Path) -> Iterator[CloudBroker]:
    broker = CloudBroker(certs, tmp_path)
    broker.start()
    yield broker
    broker.stop()


@dataclass
class Collector:
    """A subscriber on the cloud broker (the role of the IoT rule / S3 consumer)."""

    client: mqtt.Client
    messages: list[tuple[str, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def payloads(self, topic_suffix: str) -> list[dict]:
        with self.lock:
            return [json.loads(p) for t, p in self.messages if t.endswith(topic_suffix)]

    def wait_for(self, predicate, timeout: float = 20.0) -> bool:
        return wait_until(predicate, timeout)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def cloud_subscriber(certs: Certs, port: int, topic: str, persistent: bool = False) -> Collector:
    """persistent: a session the broker keeps (with a persistent broker, across its restart), and
    paho reconnects to it within a second: what was published meanwhile is delivered."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sub-{uuid.uuid4().hex[:8]}",
                         clean_session=not persistent)
    client.reconnect_delay_set(0.1, 1)
    ctx = ssl.create_default_context(cafile=certs.ca_pem)
    ctx.load_cert_chain(certs.client_pem, certs.client_key)
    client.tls_set_context(ctx)
    col = Collector(client)
    subscribed = threading.Event()

    def on_message(_c, _u, msg):
        with col.lock:
            col.messages.append((msg.topic, msg.payload))

    client.on_message = on_message
    client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert subscribed.wait(10), "could not subscribe on the cloud broker"
    return col


def local_publisher(port: int = LOCAL_PORT) -> mqtt.Client:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}")
    client.connect(LOCAL_HOST, port)
    client.loop_start()
    return client


def publish(client: mqtt.Client, topic: str, payload: bytes | str) -> None:
    info = client.publish(topic, payload, qos=1)
    info.wait_for_publish(10)
    assert info.is_published()


def envelope(device: str, kind: str, msg_id: str, body: dict | None = None) -> bytes:
    return json.dumps({"schema": 1, "type": kind, "id": msg_id, "device_id": device, "session": "s1",
                       "sent_at": time.time(), "body": body or {"n": msg_id}}).encode()


class PlainBroker(Mosquitto):
    """A private plain Mosquitto as the local broker, for tests that must stop it (the shared
    one at 127.0.0.1:1883 serves other engineers' tests)."""

    what = "local mosquitto"

    def __init__(self, workdir: Path) -> None:
        super().__init__(workdir, "local")
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                             f"persistence false\nuser {getpass.getuser()}\n")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Bridge:
    """`python -m engagement.cli mqtt_bridge` as a real process."""

    def __init__(self, device: str, queue_path: Path, cloud_port: int, certs: Certs,
                 cert: str = "client", log_path: Path | None = None, **extra: str) -> None:
        self.device, self.queue_path = device, queue_path
        self.log_path = log_path or queue_path.with_suffix(".log")
        self.env = {**os.environ, "DEVICE_ID": device, "MQTT_HOST": LOCAL_HOST, "MQTT_PORT": str(LOCAL_PORT),
                    "CLOUD_MQTT_HOST": "127.0.0.1", "CLOUD_MQTT_PORT": str(cloud_port),
                    "CLOUD_CA_FILE": certs.ca_pem, "CLOUD_CERT_FILE": str(certs.dir / f"{cert}.pem"),
                    "CLOUD_KEY_FILE": str(certs.dir / f"{cert}.key"), "BRIDGE_QUEUE_PATH": str(queue_path),
                    "BRIDGE_RETRY_BASE_SECONDS": "0.2", "BRIDGE_RETRY_MAX_SECONDS": "2",
                    "METRICS_PORT": "0", "PYTHONPATH": str(REPO), **extra}
        self.proc: subprocess.Popen | None = None
        self.publisher: mqtt.Client | None = None  # made by the first publish(), closed by stop() or kill()

    def start(self) -> Bridge:
        self.log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "mqtt_bridge"], cwd=REPO,
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        return self

    def wait_connected(self, timeout: float = 20) -> None:
        def connected() -> bool:
            text = self.log_path.read_text()
            assert self.proc and self.proc.poll() is None, f"bridge exited:\n{text}"
            return "local broker: subscribed" in text and "cloud broker: connected" in text

        assert wait_until(connected, timeout), f"bridge did not connect:\n{self.log_path.read_text()}"

    def publish(self, kind: str, payload: bytes | str) -> None:
        """Publish on the bridge's local broker, on engagement/<device>/<kind>, as a service would."""
        if self.publisher is None:
            self.publisher = local_publisher(int(self.env["MQTT_PORT"]))
        publish(self.publisher, f"engagement/{self.device}/{kind}", payload)

    def query(self, sql: str) -> list[tuple]:
        return query(self.queue_path, sql)

    def exit_status(self, timeout: float = 30) -> tuple[int, str]:
        """For a bridge that stops by itself (a refused start): its exit code and its log."""
        assert self.proc is not None
        code = self.proc.wait(timeout)
        self.log.close()
        return code, self.log_path.read_text()

    def _close_publisher(self) -> None:
        if self.publisher is not None:
            self.publisher.disconnect()
            self.publisher.loop_stop()
            self.publisher = None

    def kill(self) -> None:
        assert self.proc
        self._close_publisher()
        self.proc.kill()  # SIGKILL: no clean shutdown
        self.proc.wait(10)
        self.log.close()

    def stop(self) -> int:
        assert self.proc
        self._close_publisher()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode


def query(queue_path: Path, sql: str) -> list[tuple]:
    db = sqlite3.connect(f"file:{queue_path}?mode=ro", uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


@pytest.fixture
def device() -> str:
    return f"test-bridge-{uuid.uuid4().hex[:10]}"  # unique topics per test on the shared broker
