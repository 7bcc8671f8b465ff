"""Security and privacy 7-10, checked on the real configuration and running processes.

7. Every endpoint binds loopback by default (config defaults, the launcher's plan, and the
   listening sockets of a running pipeline); CURVE is one setting away and an
   unauthenticated peer gets nothing from, and gives nothing to, a running service.
8. Redis with a password: the pipeline works with it in REDIS_URL, fails clearly without
   it, and no secret reaches a log.
9. Privacy by default: nothing recorded without --record, no image data in any MQTT
   payload, class-level-only reports with one option.
10. EU_AI_ACT_MODE=1: an affect bundle is refused by the running inference service; the
   baseline runs with no affect model (nor TensorFlow) in the process; reports are
   class-level only.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import psutil
import pytest
import redis
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from services.launcher import main as launcher
from services.launcher.launch_settings import PIPELINE, resolve_run
from services.launcher.plan import plan_environment
from shared.bus.bus import make_curve_keys
from shared.bus.messages import decode, encode
from shared.data.model_card import ModelCard
from shared.data.totals import Store
from shared.ops.config import COMMON, SERVICES
from shared.ops.ports import free_ports
from tests.aggregator.harness import PrivateRedis, predictions_header
from tests.reliability.harness import LauncherRun, report_figures, service_pid, wait_healthy
from tests.support.env import REDIS_URL
from tests.support.metrics import scrape
from tests.support.waiting import wait_until

# --- 7. loopback by default ----------------------------------------------------------------------

def _host(value: str) -> str:
    endpoint = value.split(":", 1)[1] if "+" in value.split(":", 1)[0] else value
    return re.match(r"(?:\w+://)?(?:[^@/]*@)?\[?([^\]:/]+)", endpoint).group(1)


def test_every_default_endpoint_is_loopback():
    settings = [s for group in [COMMON, *SERVICES.values()] for s in group]
    links = [s for s in settings if s.env.endswith(("_OUT", "_IN")) and s.default]  # ACKS_*: off unless set
    assert len(links) >= 12
    hosts = {s.env: _host(s.default) for s in links}
    hosts.update({s.env: s.default for s in settings if s.env in ("METRICS_HOST", "MQTT_HOST")})
    hosts.update({s.env: _host(s.default) for s in settings if s.env == "REDIS_URL"})
    assert set(hosts.values()) == {"127.0.0.1"}, hosts
    # The launcher's plan: every link of every service on loopback.
    args = launcher.build_parser().parse_args(["--source", "x.avi"])
    envs = plan_environment(resolve_run(args), "redis://127.0.0.1:6379/0")
    planned = {f"{name}:{k}": _host(v) for name, env in envs.items() for k, v in env.items()
               if k.endswith(("_OUT", "_IN")) and "+" in v}
    assert len(planned) >= 12 and set(planned.values()) == {"127.0.0.1"}, planned


def _listening(pid: int) -> list[str]:
    return [c.laddr.ip for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN]


def _running_services() -> dict[str, int]:
    """Pids of the pipeline's `python -m engagement.cli <name>` children of this process."""
    found = {}
    for child in psutil.Process().children(recursive=False):
        try:
            cmd = child.cmdline()
            if cmd[-2:-1] == ["engagement.cli"] and cmd[-1] in PIPELINE and child.status() != psutil.STATUS_ZOMBIE:
                found[cmd[-1]] = child.pid
        except psutil.Error:
            continue
    return found


# --- 8 + 9 + 7 on a running pipeline ---------------------------------------------------------------

class MqttSink:
    """A real subscriber on the local Mosquitto: every payload under engagement/<device>/#."""

    def __init__(self, device: str) -> None:
        self.payloads: list[bytes] = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sink-{uuid.uuid4().hex[:8]}")
        subscribed = threading.Event()
        self.client.on_message = lambda _c, _u, m: self.payloads.append(m.payload)
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect("127.0.0.1", 1883)
        self.client.subscribe(f"engagement/{device}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "no subscription on the local broker"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _no_image_data(payload: bytes) -> None:
    assert len(payload) < 200_000, f"{len(payload)} bytes: too big for counts and a timeline"
    for magic in (b"\xff\xd8\xff", b"\x89PNG", b"RIFF", b"GIF8"):
        assert magic not in payload
    text = payload.decode("utf-8")  # JSON text, no binary
    doc = json.loads(text)
    assert not re.search(r"[A-Za-z0-9+/]{200,}={0,2}", text), "a long base64 run: image data?"
    keys = set()

    def walk(v: object) -> None:
        if isinstance(v, dict):
            keys.update(v)
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
    walk(doc)
    assert not keys & {"image", "frame", "crop", "crops", "pixels", "jpeg", "payload_b64"}, keys
    for blob in re.findall(r'"([A-Za-z0-9+/=]{64,})"', text):
        assert not base64.b64decode(blob + "==", validate=False).startswith(b"\xff\xd8")


def test_password_redis_privacy_defaults_loopback_sockets_and_no_secret_logged(short_video, tmp_path, capfd):
    secret = f"pw-{uuid.uuid4().hex}"
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis", password=secret)
    server.start()
    device = f"rel-{uuid.uuid4().hex[:8]}"
    sink = MqttSink(device)
    listening: dict[str, list[str]] = {}

    def fault(run: LauncherRun) -> None:
        # Sample every service for as long as it runs, not once after some predictions: on a quiet
        # machine the short file can end (and capture exit) before a single late sample.
        deadline = time.monotonic() + 120
        seen_any = False
        while time.monotonic() < deadline:
            running = _running_services()
            for name, pid in running.items():
                try:
                    listening.setdefault(name, []).extend(_listening(pid))
                except psutil.Error:
                    pass  # it ended between the listing and the sample
            seen_any = seen_any or bool(running)
            if seen_any and not running and run.tap.count() > 0:
                return
            time.sleep(0.1)

    try:
        run = LauncherRun(short_video["path"], tmp_path / "reports", server.url,
                          env={"MESSAGING": "1", "DEVICE_ID": device, "CLASS_LEVEL_ONLY": "1",
                               "RECORD_PATH": str(tmp_path / "rec"), "MQTT_TOTALS_INTERVAL": "1"})
        assert run.run(fault) == 0
        # the report's MQTT delivery (the reporter waited for the broker's PUBACK; the sink gets it just after)
        wait_until(lambda: any(b'"type":"report"' in p for p in sink.payloads), timeout=10)
    finally:
        sink.close()
        server.stop()
    logs = capfd.readouterr()
    report = run.report()
    # 8: the aggregator and the reporter worked through the password; it was never logged.
    assert report["totals"]["predictions"] == run.tap.published()["predictions"] > 0
    assert secret not in logs.out + logs.err
    assert secret not in (tmp_path / "reports" / f"{run.session}.txt").read_text() + json.dumps(report)
    # 7: every listening socket of every running service is on loopback.
    ran = set(PIPELINE) - {"sequencer"}  # the baseline at STRIDE 1 runs none (inference reads facedetect's faces)
    assert set(listening) == ran, f"services never seen running: {ran - set(listening)}"
    assert all(ip == "127.0.0.1" for ips in listening.values() for ip in ips), listening
    # 9: nothing recorded without --record; MQTT carried counts, never pixels; class level only.
    assert not (tmp_path / "rec").exists() or not any((tmp_path / "rec").iterdir())
    assert sink.payloads, "nothing reached the local broker"
    for payload in sink.payloads:
        _no_image_data(payload)
    assert report["class_level_only"] is True and report["students"] == [] and report["timeline"] == []
    assert report["episodes"] == []
    report_figures("privacy", mqtt_payloads=len(sink.payloads), max_payload_bytes=max(map(len, sink.payloads)),
                   listening={k: sorted(set(v)) for k, v in listening.items()}, secret_in_logs=False)


def test_without_the_password_redis_refuses_and_says_so_and_the_wrong_one_is_not_logged(tmp_path):
    (tmp_path / "redis").mkdir()
    server = PrivateRedis(tmp_path / "redis", password="right-" + uuid.uuid4().hex)
    server.start()
    wrong = "wrong-" + uuid.uuid4().hex
    pred_port, upd_port, metrics_port = free_ports(3)
    results = {}
    try:
        for label, url in (("none", f"redis://127.0.0.1:{server.port}/0"),
                           ("wrong", f"redis://:{wrong}@127.0.0.1:{server.port}/0")):
            env = {**os.environ, "REDIS_URL": url, "METRICS_PORT": str(metrics_port),
                   "PREDICTIONS_IN": f"pull+bind:tcp://127.0.0.1:{pred_port}",
                   "UPDATES_OUT": f"push+bind:tcp://127.0.0.1:{upd_port}"}
            proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "aggregator"], env=env,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            push = zmq.Context.instance().socket(zmq.PUSH)
            push.setsockopt(zmq.LINGER, 0)
            try:
                wait_healthy(metrics_port)
                push.connect(f"tcp://127.0.0.1:{pred_port}")
                push.send_multipart(encode(predictions_header("s-noauth", 1, [(1, 0)])))
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    samples = scrape(metrics_port)
                    if sum(v for (n, _), v in samples.items() if n == "engagement_redis_errors_total") >= 2:
                        break
                    time.sleep(0.2)
                backlog = sum(v for (n, _), v in scrape(metrics_port).items() if n == "engagement_aggregator_backlog")
            finally:
                push.close(0)
                proc.terminate()
                out = proc.communicate(timeout=30)[0]
            results[label] = (backlog, out)
    finally:
        server.stop()
    for label, (backlog, out) in results.items():
        assert "refused the credentials" in out and "set the password in REDIS_URL" in out, out
        assert backlog == 1, f"{label}: the prediction must wait in the backlog, not vanish"
        assert wrong not in out
        assert "***@" in out or label == "none"  # the URL is logged with its password masked
    # The reporter says so at start-up too (not only when the class ends).
    env = {**os.environ, "REDIS_URL": f"redis://:{wrong}@127.0.0.1:{server.port}/0", "METRICS_PORT": "0",
           "UPDATES_IN": f"pull+connect:tcp://127.0.0.1:{upd_port}", "PREVIEW_IN": f"sub+connect:tcp://127.0.0.1:{upd_port}"}
    server.start()
    try:
        log_path = tmp_path / "reporter.log"
        with open(log_path, "w") as log_file:
            proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "reporter"], env=env, stdout=log_file,
                                    stderr=subprocess.STDOUT, text=True)
            wait_until(lambda: "refused the credentials" in log_path.read_text(), timeout=30)
            proc.terminate()
            proc.wait(timeout=30)
        out = log_path.read_text()
    finally:
        server.stop()
    assert "refused the credentials" in out and wrong not in out, out


# --- 7. CURVE on a running service --------------------------------------------------------------------

def _curve_socket(sock_type: int, secret_file: str, server: bool) -> zmq.Socket:
    sock = zmq.Context.instance().socket(sock_type)
    sock.setsockopt(zmq.LINGER, 0)
    public, secret = zmq.auth.load_certificate(secret_file)
    sock.curve_publickey, sock.curve_secretkey = public, secret
    if server:
        sock.curve_server = True
    else:
        sock.curve_serverkey = public
    return sock


def _connect_and_handshake(sock: zmq.Socket, endpoint: str, timeout_s: float = 15.0) -> None:
    """Connect and wait for the CURVE handshake to succeed (a socket monitor reports it)."""
    monitor = sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
    try:
        sock.connect(endpoint)
        assert monitor.poll(int(timeout_s * 1000)), f"no CURVE handshake with {endpoint} in {timeout_s:.0f} s"
        event = recv_monitor_message(monitor)
        assert event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED, event
    finally:
        sock.disable_monitor()
        monitor.close(0)


def test_curve_a_stranger_gets_nothing_from_and_gives_nothing_to_a_running_service(tmp_path):
    secret_file = str(make_curve_keys(str(tmp_path / "keys")))
    pred_port, upd_port, metrics_port = free_ports(3)
    prefix = f"curve-{uuid.uuid4().hex[:10]}"
    env = {**os.environ, "REDIS_URL": REDIS_URL, "REDIS_PREFIX": prefix, "METRICS_PORT": str(metrics_port),
           "CURVE_SERVER_KEY": secret_file,  # the one setting
           "PREDICTIONS_IN": f"pull+bind:tcp://127.0.0.1:{pred_port}",
           "UPDATES_OUT": f"push+bind:tcp://127.0.0.1:{upd_port}"}
    proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "aggregator"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    ctx = zmq.Context.instance()
    sockets = []
    try:
        wait_healthy(metrics_port)
        stranger_in = ctx.socket(zmq.PULL)  # wants the totals, has no keys
        stranger_out = ctx.socket(zmq.PUSH)  # wants to write totals, has no keys
        # A stranger with a key pair of its own: completes no handshake either.
        rogue_dir = tmp_path / "rogue"
        rogue_secret = str(make_curve_keys(str(rogue_dir)))
        rogue_out = _curve_socket(zmq.PUSH, rogue_secret, server=False)
        rogue_out.curve_serverkey = zmq.auth.load_certificate(secret_file)[0]
        for s in (stranger_in, stranger_out, rogue_out):
            s.setsockopt(zmq.LINGER, 0)
            sockets.append(s)
        stranger_in.connect(f"tcp://127.0.0.1:{upd_port}")
        stranger_out.connect(f"tcp://127.0.0.1:{pred_port}")
        rogue_out.connect(f"tcp://127.0.0.1:{pred_port}")
        for seq in range(5):
            for sock in (stranger_out, rogue_out):
                try:
                    sock.send_multipart(encode(predictions_header("s-stranger", seq, [(1, 3)])), zmq.NOBLOCK)
                except zmq.Again:
                    pass  # no handshake, no peer: nothing even leaves
        friend_out = _curve_socket(zmq.PUSH, secret_file, server=False)
        friend_in = _curve_socket(zmq.PULL, secret_file, server=False)
        sockets += [friend_out, friend_in]
        # Updates are droppable: the service drops one that has no authenticated peer yet, so the
        # friend's update socket must finish its CURVE handshake before the prediction goes out.
        _connect_and_handshake(friend_in, f"tcp://127.0.0.1:{upd_port}")
        friend_out.connect(f"tcp://127.0.0.1:{pred_port}")
        friend_out.send_multipart(encode(predictions_header("s-friend", 1, [(1, 0)])))
        assert friend_in.poll(15000), "the authenticated peer got no update"
        update = decode(friend_in.recv_multipart())
        assert update.header.session == "s-friend"
        time.sleep(1.0)
        assert not stranger_in.poll(500), "an unauthenticated peer received an update"
        store = Store.from_url(REDIS_URL, prefix=prefix)
        assert store.session_totals("s-stranger")["frames"] == 0
        assert store.session_totals("s-friend")["frames"] == 1
        report_figures("curve", stranger_messages_received=0, stranger_writes_counted=0, friend_updates=1)
    finally:
        for s in sockets:
            s.close(0)
        proc.terminate()
        proc.wait(20)
        r = redis.Redis.from_url(REDIS_URL)
        keys = list(r.scan_iter(match=f"{prefix}:*"))
        if keys:
            r.delete(*keys)


# --- 10. EU AI Act mode ---------------------------------------------------------------------------------

def _affect_bundle(folder: Path) -> Path:
    """An affect model's bundle. The weights file is junk: under the mode it must never be read."""
    ModelCard(name="affect-daisee", kind="frame", affect=True, preprocessing="mobilenet_v2", heads=["boredom"],
              input={"size": [96, 96], "channels": 3, "color": "rgb", "sequence_length": 1},
              trained_on="DAiSEE boredom labels").save(folder)
    (folder / "model.keras").write_bytes(b"not a model: must never be opened")
    return folder


def test_eu_ai_act_mode_inference_refuses_an_affect_bundle_and_runs_the_baseline(tmp_path):
    bundle = _affect_bundle(tmp_path / "affect")
    batches_port, predictions_port, metrics_port = free_ports(3)
    env = {**os.environ, "METRICS_PORT": str(metrics_port), "EU_AI_ACT_MODE": "1", "MODEL": str(bundle),
           "BATCHES_IN": f"pull+connect:tcp://127.0.0.1:{batches_port}",
           "PREDICTIONS_OUT": f"push+bind:tcp://127.0.0.1:{predictions_port}"}
    log_path = tmp_path / "inference.log"
    ctx = zmq.Context.instance()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    for sock in (push, pull):
        sock.setsockopt(zmq.LINGER, 0)
    push.bind(f"tcp://127.0.0.1:{batches_port}")
    with log_path.open("w") as log_file:
        proc = subprocess.Popen([sys.executable, "-m", "engagement.cli", "inference"], env=env, stdout=log_file,
                                stderr=subprocess.STDOUT)
        try:
            wait_healthy(metrics_port, timeout=120)
            pull.connect(f"tcp://127.0.0.1:{predictions_port}")
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            opened = [f.path for f in psutil.Process(proc.pid).open_files()]
            refused = sum(v for (n, _), v in scrape(metrics_port).items()
                          if n == "engagement_inference_model_errors_total")
            header = predictions_header("s-eu", 1, [])  # reuse identity fields for a batch
            batch = {**{k: getattr(header, k) for k in ("v", "session", "stream", "seq", "t_capture", "stamps")},
                     "kind": "batch", "crop": 8, "length": 1, "students": [], "faces": [], "t_media": None}
            push.send_multipart(encode(batch))
            assert pull.poll(30000), "no predictions from the running inference"
            out = decode(pull.recv_multipart())
        finally:
            push.close(0)
            pull.close(0)
            proc.terminate()
            proc.wait(30)
    log = log_path.read_text()
    # Refused, said once in one line, counted; the attention baseline runs instead.
    assert "EU_AI_ACT_MODE" in log and "Traceback" not in log
    assert refused == 1
    assert out.header.model.affect is False and out.header.model.baseline is True
    # No affect model in the process: TensorFlow never loaded, the bundle's file never opened.
    assert "tensorflow" not in maps and not any(str(bundle) in p for p in opened)
    report_figures("eu-ai-act-refusal", affect_bundle_refused=True, tensorflow_loaded=False,
                   model_running=out.header.model.name)


@pytest.mark.usefixtures("short_video")
def test_eu_ai_act_mode_pipeline_loads_no_affect_model_and_reports_class_level(short_video, tmp_path):
    seen: dict[str, object] = {}

    def fault(run: LauncherRun) -> None:
        run.wait_for_predictions(1)
        proc = psutil.Process(service_pid("inference"))
        maps = Path(f"/proc/{proc.pid}/maps").read_text()
        seen["tensorflow_loaded"] = "tensorflow" in maps or "libtensorflow" in maps
        seen["affect_files_open"] = [f.path for f in proc.open_files() if "emotion" in f.path or f.path.endswith(
            (".hdf5", ".keras", ".h5"))]
        seen["emotion_mapped"] = "emotion_model" in maps

    run = LauncherRun(short_video["path"], tmp_path, REDIS_URL, env={"EU_AI_ACT_MODE": "1"})
    assert run.run(fault) == 0
    report = run.report()
    assert seen == {"tensorflow_loaded": False, "affect_files_open": [], "emotion_mapped": False}
    assert report["model"]["affect"] is False and report["model"]["baseline"] is True
    assert report["class_level_only"] is True and report["students"] == [] and report["timeline"] == []
    assert report["totals"]["predictions"] == run.tap.published()["predictions"] > 0
    report_figures("eu-ai-act", **seen, class_level_only=True)


# --- 8. secrets in the deployment files ----------------------------------------------------------------

def test_deployment_takes_every_secret_from_the_env_file_and_cloud_mqtt_is_tls_with_client_certs():
    from tests.deploy.tools import COMPOSE_FILES, load_yaml

    compose = load_yaml(COMPOSE_FILES[0])
    text = COMPOSE_FILES[0].read_text()
    services = compose["services"]
    # Secrets come as compose secret files (SECRETS_DIR), never as variables or written in the file.
    for name in ("aggregator", "reporter"):
        assert services[name]["environment"]["REDIS_URL_FILE"].startswith("/run/secrets/")
        assert "REDIS_URL" not in services[name]["environment"]
    grafana = services["grafana"]["environment"]
    assert grafana["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith("/run/secrets/")
    assert "GF_SECURITY_ADMIN_PASSWORD" not in grafana
    assert not re.search(r"(?i)password\s*[:=]\s*['\"]?(?!\$\{)[A-Za-z0-9]", text), "a literal password"
    # MQTT to the cloud: TLS port, the CA and a client certificate + key.
    bridge = services["mqtt-bridge"]["environment"]
    assert bridge["CLOUD_MQTT_PORT"].endswith("8883}") or bridge["CLOUD_MQTT_PORT"] == "8883"
    assert {"CLOUD_CA_FILE", "CLOUD_CERT_FILE", "CLOUD_KEY_FILE"} <= set(bridge)
