"""Every setting of every service, in one place.

Each setting is read from an environment variable and can be overridden by the matching
CLI flag (`SESSION_ID` <-> `--session-id`). compose/, k8s/ and the local launcher set the
same variable names, so a value means the same thing wherever it is set.

Bus links are connection strings `<socket type>+<bind|connect>:<endpoint>` (one per side
of a link), so the pattern and which side binds are configuration, not code. The links,
their patterns, default ports and why are in one table, shared/links.py; the link settings
below are derived from it.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.links import BY_NAME

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None

    @property
    def flag(self) -> str:
        return "--" + self.env.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        return self.env.lower()


def _link(name: str) -> tuple[Setting, Setting]:
    """The two settings of a link of shared/links.py; a link not wired by default is empty = off."""
    link = BY_NAME[name]
    on = link.wired_by_default
    out = Setting(link.out_setting, link.out_spec() if on else "",
                  f"socket the {name} link is sent on" + ("" if on else " (empty = none)"))
    inn = Setting(link.in_setting, link.in_spec() if on else "",
                  f"socket the {name} link is received on" + ("" if on else " (empty = none)"))
    return out, inn


FRAMES_OUT, FRAMES_IN = _link("frames")
PREVIEW_OUT, PREVIEW_IN = _link("preview")
FACES_OUT, FACES_IN = _link("faces")
BATCHES_OUT, BATCHES_IN = _link("batches")
PREDICTIONS_OUT, PREDICTIONS_IN = _link("predictions")
UPDATES_OUT, UPDATES_IN = _link("updates")
# Off unless set (the launcher and compose set it): a default bind would make every bare
# aggregator in a test suite claim the same port.
ACKS_OUT, ACKS_IN = _link("acks")

# Each service serves Prometheus metrics (and /healthz) on its own port.
METRICS_PORTS: dict[str, int] = {
    "capture": 9101,
    "facedetect": 9102,
    "sequencer": 9103,
    "inference": 9104,
    "aggregator": 9105,
    "reporter": 9106,
    "mqtt_bridge": 9107,
}

COMMON: list[Setting] = [
    Setting("SESSION_ID", "", "session id; the launcher sets one per run (default: time-based)"),
    Setting("CLASS_ID", "default-class", "class (course) the session belongs to"),
    Setting("STREAM_ID", "cam0", "id of the video stream"),
    Setting("LOG_LEVEL", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("METRICS_HOST", "127.0.0.1", "address the metrics/health HTTP server binds"),
    Setting("MODELS_DIR", str(REPO_ROOT / "models"), "where fetched weights and model bundles live"),
    Setting("HWM", 4, "ZeroMQ high-water mark (messages) on every bus socket", int),
    Setting("CURVE_SERVER_KEY", "", "path to a CURVE server key file; set to authenticate bus peers"),
    # EU AI Act Article 5(1)(f): no emotion inference in education. When set, affect models
    # are refused and reports are class-level only.
    Setting("EU_AI_ACT_MODE", 0, "1 = refuse affect models, class-level reports only", int),
]

SERVICES: dict[str, list[Setting]] = {
    "capture": [
        Setting("SOURCE", "0", "webcam index, video file path or RTSP/HTTP URL"),
        Setting("FPS", 2.0, "frames per second to emit (files: by the file's own timestamps)", float),
        Setting("WIDTH", 640, "frame width", int),
        Setting("HEIGHT", 480, "frame height", int),
        Setting("REALTIME", 0, "1 = pace a file source at --fps in wall-clock time (drops when slow)", int),
        Setting("RETRY_MAX_SECONDS", 30.0, "cap of the reconnect backoff for cameras and streams", float),
        Setting("RETRY_LIMIT", 0, "give up after this many failed opens (0 = never for cameras)", int),
        Setting("FRAME_ENCODING", "bgr", "payload encoding on the bus", choices=("bgr", "jpeg")),
        FRAMES_OUT, PREVIEW_OUT,
    ],
    "facedetect": [
        Setting("DETECTOR", "dnn", "face detector backend", choices=("dnn", "haar")),
        Setting("CONFIDENCE", 0.5, "minimum detection confidence (dnn)", float),
        Setting("CROP_SIZE", 224, "side of the square face crop sent downstream", int),
        Setting("CROP_MARGIN", 0.25, "margin added around each face box, as a fraction of its size", float),
        Setting("TRACK_IOU", 0.3, "minimum IoU to keep a student's id from the last frame", float),
        Setting("TRACK_MAX_AGE", 10.0, "seconds a lost student's id is kept for re-identification", float),
        FRAMES_IN, FACES_OUT,
    ],
    "sequencer": [
        Setting("SEQUENCE_LENGTH", 1, "crops per student per sample (model card's sequence length)", int),
        Setting("STRIDE", 1, "frames between two samples of the same student", int),
        Setting("STUDENT_TIMEOUT", 10.0, "seconds after which an unseen student's buffer is dropped", float),
        FACES_IN, BATCHES_OUT,
    ],
    "inference": [
        Setting("MODEL", "baseline", "'baseline' (face-mesh attention) or a model bundle directory"),
        Setting("ENGINE", "auto", "how a Keras bundle runs", choices=("auto", "keras", "tflite", "predict")),
        Setting("SMOOTHING_WINDOW", 5, "frames the baseline smooths its attention signals over", int),
        Setting("GAZE", 0, "1 = the baseline adds iris gaze to its signals (about 4 ms more a face)", int),
        Setting("BASELINE_THRESHOLDS", "", "baseline card with fitted thresholds (engagement-train "
                "fit-baseline); empty = the documented defaults"),
        Setting("NEUTRAL_POSE", 1, "1 = the baseline measures head turns from each student's learned "
                "neutral pose (services/inference/BASELINE.md)", int),
        Setting("NEUTRAL_LEARN_SECONDS", 10.0, "seconds of steady pose a neutral pose is learned from", float),
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the teacher's marks (re-anchor neutral poses)"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key"),
        Setting("SLOWDOWN", 0.0, "extra seconds per batch, for fault-injection tests only", float),
        Setting("ACK_TIMEOUT", 3.0, "seconds before an unacknowledged predictions message is resent", float),
        Setting("ACK_WINDOW", 2000, "sent-but-unacknowledged messages kept for resending", int),
        BATCHES_IN, PREDICTIONS_OUT, ACKS_IN,
    ],
    "aggregator": [
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the running totals"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key of the totals"),
        Setting("BACKLOG_MAX", 10000, "frames kept in memory while Redis is unreachable", int),
        PREDICTIONS_IN, UPDATES_OUT, ACKS_OUT,
    ],
    "reporter": [
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the running totals"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key of the totals"),
        Setting("HEADLESS", -1, "1 = no window; default: headless when there is no display", int),
        Setting("RECORD", 0, "1 = record the overlaid video", int),
        Setting("RECORD_PATH", str(REPO_ROOT / "recordings"), "folder for recordings"),
        Setting("RECORD_FILENAME", "", "recording file name (default infer<datetime>.avi)"),
        Setting("RECORD_CODEC", "MJPG", "FourCC of the recording codec"),
        Setting("RECORD_FPS", 2.0, "frame rate of the recording", float),
        Setting("RECORD_WIDTH", 640, "recording width", int),
        Setting("RECORD_HEIGHT", 480, "recording height", int),
        Setting("RECORD_MIN_FREE_BYTES", 50_000_000, "recording stops when the disk has less free space", int),
        Setting("REPORT_DIR", str(REPO_ROOT / "reports"), "folder the end-of-session reports go to"),
        Setting("CLASS_LEVEL_ONLY", 0, "1 = reports carry no per-student rows", int),
        Setting("MESSAGING", 0, "1 = publish totals and the report to the local MQTT broker", int),
        Setting("MQTT_HOST", "127.0.0.1", "local MQTT broker host"),
        Setting("MQTT_PORT", 1883, "local MQTT broker port", int),
        Setting("DEVICE_ID", "jetson-01", "device id used in MQTT topics"),
        Setting("MQTT_TOTALS_INTERVAL", 10.0, "seconds between totals published over MQTT", float),
        PREVIEW_IN, UPDATES_IN,
    ],
    # The reporter publishes totals every MQTT_TOTALS_INTERVAL (10 s) and the report at the end.
    "mqtt_bridge": [
        Setting("MQTT_HOST", "127.0.0.1", "local MQTT broker host"),
        Setting("MQTT_PORT", 1883, "local MQTT broker port", int),
        Setting("DEVICE_ID", "jetson-01", "device id: local topics engagement/<id>/..., cloud client id"),
        Setting("CLOUD_MQTT_HOST", "", "AWS IoT Core endpoint (xxxx-ats.iot.<region>.amazonaws.com)"),
        Setting("CLOUD_MQTT_PORT", 8883, "cloud broker port (MQTT over TLS 1.2)", int),
        Setting("CLOUD_CA_FILE", "/certs/AmazonRootCA1.pem", "CA that signs the cloud broker's certificate"),
        Setting("CLOUD_CERT_FILE", "/certs/device.pem.crt", "device X.509 client certificate"),
        Setting("CLOUD_KEY_FILE", "/certs/private.pem.key", "private key of the client certificate"),
        Setting("CLOUD_TOPIC_PREFIX", "engagement", "cloud topics are <prefix>/<device id>/<type>"),
        Setting("BRIDGE_QUEUE_PATH", str(REPO_ROOT / "data" / "bridge" / "queue.sqlite3"),
                "SQLite store-and-forward queue (on the data volume)"),
        Setting("BRIDGE_RETRY_BASE_SECONDS", 1.0, "first reconnect/resend delay; doubles per failure", float),
        Setting("BRIDGE_RETRY_MAX_SECONDS", 60.0, "cap of the reconnect/resend backoff", float),
        Setting("BRIDGE_ACK_TIMEOUT", 30.0, "seconds to wait for the cloud PUBACK before a resend", float),
        Setting("BRIDGE_MAX_INFLIGHT", 20, "unacknowledged cloud publishes at a time", int),
        Setting("BRIDGE_MAX_PAYLOAD_BYTES", 131072, "cloud payload limit (AWS IoT: 128 KB)", int),
        Setting("BRIDGE_MAX_PARTS", 64, "an oversized report is split into at most this many parts", int),
    ],
}


@dataclass
class Settings:
    """Resolved settings of one service: attribute access by lower-case env name."""

    service: str
    values: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError as exc:
            raise AttributeError(name) from exc


def settings_for(service: str) -> list[Setting]:
    return COMMON + SERVICES.get(service, [])


_BOOL_WORDS = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


def _coerce(setting: Setting, raw: str) -> Any:
    if setting.type is int and raw.strip().lower() in _BOOL_WORDS:
        return _BOOL_WORDS[raw.strip().lower()]
    return setting.type(raw)


def build_parser(service: str, parser: argparse.ArgumentParser | None = None,
                 env: dict[str, str] | None = None) -> argparse.ArgumentParser:
    env = os.environ if env is None else env
    parser = parser or argparse.ArgumentParser(prog=f"engagement {service}")
    for s in settings_for(service):
        default = _coerce(s, env[s.env]) if s.env in env else s.default
        parser.add_argument(s.flag, dest=s.dest, default=default, type=s.type, choices=s.choices,
                            help=f"{s.help} (env {s.env}, default {s.default!r})")
    parser.add_argument("--metrics-port", dest="metrics_port", type=int,
                        default=int(env.get("METRICS_PORT", METRICS_PORTS.get(service, 0))),
                        help="Prometheus metrics and /healthz port (env METRICS_PORT; 0 = off)")
    return parser


def load_settings(service: str, argv: list[str] | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    ns = build_parser(service, env=env).parse_args(argv)
    return Settings(service=service, values=vars(ns))


def env_names() -> set[str]:
    """Every environment variable the project reads (checked against compose's .env.example)."""
    names = {s.env for group in [COMMON, *SERVICES.values()] for s in group}
    return names | {"METRICS_PORT"}
