"""Every setting of every service, in one place.

A setting comes from, highest first: its CLI flag (`SESSION_ID` <-> `--session-id`), its
environment variable, a YAML config file (`--config FILE` or `CONFIG_FILE`; keys are the
lower-case names, `engagement config --example` prints one with every setting), its
default. compose/, k8s/ and the local launcher set the same variable names, so a value
means the same thing wherever it is set. Every value is checked against its type, choices
and bounds; a bad one stops the program with one line naming the setting, where the value
came from and what is allowed (`SettingError`).

Bus links are connection strings `<socket type>+<bind|connect>:<endpoint>` (one per side
of a link), so the pattern and which side binds are configuration, not code. The links,
their patterns, default ports and why are in one table, shared/links.py; the link settings
below are derived from it.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shared.links import BY_NAME

# Kept here, not imported from shared/detectors (which imports OpenCV), so settings stay light.
DETECTOR_NAMES = ("auto", "blazeface", "blazeface_short", "blazeface_full", "dnn", "haar")

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Setting:
    env: str
    default: Any
    help: str
    type: type = str
    choices: tuple[str, ...] | None = None
    min: float | None = None  # lowest allowed value (numbers)
    max: float | None = None

    @property
    def switch(self) -> bool:
        """An on/off setting (`1 = ...`): its flag given alone means 1."""
        return self.type is int and self.help.startswith("1 = ")

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
LIVE_OUT, LIVE_IN = _link("live")

# Each service serves Prometheus metrics (and /healthz) on its own port.
METRICS_PORTS: dict[str, int] = {
    "capture": 9101,
    "facedetect": 9102,
    "sequencer": 9103,
    "inference": 9104,
    "aggregator": 9105,
    "reporter": 9106,
    "mqtt_bridge": 9107,
    "web": 9108,
}

# CPU budget per service (shared/cpu_budget.py): threads each library may use in that
# service's process, so the stages overlap instead of each sizing its pools to every core.
# A budget setting left at 0 takes the service's value here; absent here = the library's own
# default (every core). From `engagement bench --budget-sweep` (bench/RESULTS.md).
CPU_BUDGETS: dict[str, dict[str, int]] = {
    "capture": {"CV_THREADS": 1},
    "facedetect": {"CV_THREADS": 1, "LITERT_THREADS": 1},
    "sequencer": {"CV_THREADS": 1},
    # The model call takes both cores of a 2-core box (ONNX Runtime and LiteRT: 2 threads there).
    "inference": {"CV_THREADS": 1, "LITERT_THREADS": 2, "ORT_THREADS": 2, "TF_INTRA_OP_THREADS": 1,
                  "TF_INTER_OP_THREADS": 1},
    "aggregator": {"CV_THREADS": 1},
    "reporter": {"CV_THREADS": 1},
}
# With a trained model on a machine of at most SMALL_BOX_CPUS cores, `engagement run` pins the
# light stages to CPU 0 (CPU_AFFINITY, unless set) and lets inference use both, so the model
# call does not wait behind them: the sweep's winner for bundles on 2 cores (8 faces: 20.4 vs
# 17.1 frames/s, means of 3 passes; 2 FPS p99 127 vs 247 ms, medians). Not for the baseline, whose
# face mesh is light and whose detection needs a core of its own (85 vs 129 frames/s pinned),
# nor on bigger machines (not measured). bench/RESULTS.md has the sweep.
SMALL_BOX_CPUS = 2
SMALL_BOX_AFFINITY: dict[str, str] = dict.fromkeys(("capture", "facedetect", "sequencer", "aggregator", "reporter"),
                                                   "0")
_BUDGET_DEFAULT = "0 = the service's budget (CPU_BUDGETS), -1 = the library's default"
BUDGET: list[Setting] = [
    Setting("CV_THREADS", 0, f"OpenCV threads ({_BUDGET_DEFAULT})", int, min=-1),
    Setting("LITERT_THREADS", 0, f"threads of each LiteRT interpreter ({_BUDGET_DEFAULT})", int, min=-1),
    Setting("ORT_THREADS", 0, f"threads of each ONNX Runtime session ({_BUDGET_DEFAULT})", int, min=-1),
    Setting("TF_INTRA_OP_THREADS", 0, f"TensorFlow threads inside one op ({_BUDGET_DEFAULT})", int, min=-1),
    Setting("TF_INTER_OP_THREADS", 0, f"TensorFlow ops run side by side ({_BUDGET_DEFAULT})", int, min=-1),
    Setting("CPU_AFFINITY", "", "CPUs a service may run on, e.g. 0 or 0-1 or 0,2 (empty = any; `engagement run` "
            "pins the light stages of a trained model on a 2-core machine: SMALL_BOX_AFFINITY)"),
]


COMMON: list[Setting] = [
    Setting("SESSION_ID", "", "session id; the launcher sets one per run (default: time-based)"),
    Setting("CLASS_ID", "default-class", "class (course) the session belongs to"),
    Setting("STREAM_ID", "cam0", "id of the video stream"),
    # Several cameras or screens in one class: each capture has its own STREAM_ID; every service
    # gets the whole list (the aggregator ends the session once every listed stream has ended).
    Setting("STREAMS", "", "ids of every stream of the class, comma-separated, when it has several (the launcher "
            "sets it from its sources); empty = STREAM_ID alone"),
    Setting("LOG_LEVEL", "INFO", "log level", choices=("DEBUG", "INFO", "WARNING", "ERROR")),
    Setting("METRICS_HOST", "127.0.0.1", "address the metrics/health HTTP server binds"),
    Setting("MODELS_DIR", str(REPO_ROOT / "models"), "where fetched weights and model bundles live"),
    Setting("HWM", 4, "ZeroMQ high-water mark (messages) on every bus socket", int, min=1),
    Setting("CURVE_SERVER_KEY", "", "path to a CURVE server key file; set to authenticate bus peers"),
    # EU AI Act Article 5(1)(f): no emotion inference in education. When set, affect models
    # are refused and reports are class-level only.
    Setting("EU_AI_ACT_MODE", 0, "1 = refuse affect models, class-level reports only", int),
    *BUDGET,
]

SERVICES: dict[str, list[Setting]] = {
    "capture": [
        Setting("SOURCE", "0", "webcam index, video file path, RTSP/HTTP URL, or screen, screen:N, "
                "region:X,Y,W,H, window:TITLE; `engagement run` takes several, one stream each (repeat --source "
                "[ID[@FPS]=]SOURCE, or a list in the config file)"),
        Setting("FPS", 2.0, "frames per second to emit (files: by the file's own timestamps; 0 = every frame)", float,
                min=0, max=240),
        Setting("WIDTH", 640, "frame width", int, min=16, max=8192),
        Setting("HEIGHT", 480, "frame height", int, min=16, max=8192),
        Setting("REALTIME", 0, "1 = pace a file source at --fps in wall-clock time (drops when slow)", int),
        Setting("RETRY_MAX_SECONDS", 30.0, "cap of the reconnect backoff for cameras and streams", float, min=0.01),
        Setting("RETRY_LIMIT", 0, "give up after this many failed opens (0 = never; `engagement run --reconnect`)", int,
                min=0),
        Setting("FRAME_ENCODING", "bgr", "payload encoding on the bus", choices=("bgr", "jpeg")),
        Setting("CAPTURE_STATE_DIR", "", "folder where a running capture keeps its stream's state, so that a "
                "restart after a crash by a supervisor that cannot say so (Docker's restart policy) keeps the "
                "session and continues seq; empty = off (`engagement run` restarts its captures itself)"),
        Setting("RESUME_WINDOW_SECONDS", 120.0, "a capture state refreshed this recently is a crashed run of "
                "the same stream to resume; older is a new stream", float, min=1),
        FRAMES_OUT, PREVIEW_OUT,
    ],
    "facedetect": [
        Setting("DETECTOR", "auto", "face detector (shared/detectors.py; auto = best measured recall, then speed)",
                choices=DETECTOR_NAMES),
        Setting("CONFIDENCE", 0.5, "minimum detection confidence", float, min=0, max=1),
        Setting("DETECT_EVERY", 3, "run the detector every N frames and follow the faces in between "
                "(at once when a face is lost or the scene changes elsewhere); 1 = every frame", int, min=1),
        Setting("CROP_SIZE", 224, "side of the square face crop sent downstream", int, min=8, max=1024),
        Setting("CROP_MARGIN", 0.25, "margin added around each face box, as a fraction of its size", float),
        Setting("TRACK_IOU", 0.3, "minimum IoU to keep a student's id from the last frame", float),
        Setting("TRACK_MAX_AGE", 10.0, "seconds a lost student's id is kept for re-identification", float),
        Setting("GALLERY", "auto", "auto = find a video call's participant grid and give each tile a student; "
                "off = plain face detection", choices=("auto", "off")),
        Setting("GALLERY_NAMES", "off", "ocr = read each call tile's name label (RapidOCR: pip install -e '.[ocr]') "
                "and keep a student's id by it when the grid reflows; names stay on this box (Redis), "
                "never read with CLASS_LEVEL_ONLY=1; off = ids by tile place and look", choices=("ocr", "off")),
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the running totals"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key of the totals"),
        Setting("CLASS_LEVEL_ONLY", 0, "1 = reports carry no per-student rows", int),
        FRAMES_IN, FACES_OUT,
    ],
    "sequencer": [
        Setting("SEQUENCE_LENGTH", 1, "crops per student per sample (model card's sequence length)", int, min=1),
        Setting("STRIDE", 1, "frames between two samples of the same student", int, min=1),
        Setting("STUDENT_TIMEOUT", 10.0, "seconds after which an unseen student's buffer is dropped", float),
        FACES_IN, BATCHES_OUT,
    ],
    "inference": [
        Setting("MODEL", "baseline", "'baseline' (face-mesh attention) or a model bundle directory"),
        Setting("ENGINE", "auto", "how a trained bundle runs (auto: the fastest that agrees with Keras)",
                choices=("auto", "keras", "tflite", "predict", "onnx")),
        # Engines rank differently by batch size (LiteRT led at 1 face, ONNX Runtime at 8 on 2 cores).
        Setting("ENGINE_PROBE_FACES", 8, "faces per frame ENGINE=auto times the engines at, besides one "
                "(the class's usual number); it keeps the lowest total", int, min=1, max=64),
        Setting("TRT_CACHE_DIR", "", "where ONNX Runtime's TensorRT provider keeps the engines it builds "
                "('' = ~/.cache/engagement/tensorrt)"),
        Setting("TRT_FP16", 1, "1 = TensorRT may compute in float16 (ENGINE=auto still checks it against Keras)", int,
                min=0, max=1),
        # In seconds of the video, so it means the same at every FPS (5 frames were 2.5 s at 2 FPS and
        # hid a 1.5 s glance away).
        Setting("SMOOTHING_SECONDS", 1.0, "seconds of video the baseline averages its attention signals over "
                "(0 = no smoothing)", float, min=0, max=60),
        # The old setting, still read: N frames at FPS (so compose files and scripts keep working).
        Setting("SMOOTHING_WINDOW", 0, "deprecated: frames to average over, turned into seconds at FPS "
                "(0 = use SMOOTHING_SECONDS)", int, min=0),
        Setting("FPS", 2.0, "the capture's frames per second (turns SMOOTHING_WINDOW into seconds)", float,
                min=0, max=240),
        Setting("GAZE", 0, "1 = the baseline adds iris gaze to its signals (about 4 ms more a face)", int),
        Setting("BASELINE_THRESHOLDS", "", "baseline card with fitted thresholds (engagement-train "
                "fit-baseline); empty = the documented defaults"),
        Setting("NEUTRAL_POSE", 1, "1 = the baseline measures head turns from each student's learned "
                "neutral pose (services/inference/BASELINE.md)", int),
        Setting("NEUTRAL_LEARN_SECONDS", 10.0, "seconds of steady pose a neutral pose is learned from", float,
                min=0),
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the running totals and the teacher's "
                "marks (inference reads the marks: they re-anchor neutral poses)"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key of the totals and the marks"),
        # Several streams (cameras) in one class: their batches waiting together go through one model
        # call (a GPU or XNNPACK runs 8 faces in far less than 8 times one face's time).
        Setting("MAX_BATCH_FACES", 32, "most faces in one model call: batch messages waiting together, of any "
                "stream, are run at once up to this many faces", int, min=1, max=1024),
        Setting("SLOWDOWN", 0.0, "extra seconds per model call, for fault-injection tests only", float),
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
        Setting("RECORD_PATH", "", "folder for recordings (default: REPORT_DIR, beside the session's report)"),
        Setting("RECORD_FILENAME", "", "recording file name (default <session>.avi)"),
        Setting("RECORD_CODEC", "MJPG", "FourCC of the recording codec"),
        # 0 = follow the capture (FPS, frame size), so a recording plays at the speed of the class.
        Setting("FPS", 2.0, "the capture's frames per second (the recording's rate by default)", float,
                min=0, max=240),
        Setting("RECORD_FPS", 0.0, "frame rate of the recording (0 = the capture's FPS)", float, min=0, max=240),
        Setting("RECORD_WIDTH", 0, "recording width (0 = the frames' width)", int, min=0, max=8192),
        Setting("RECORD_HEIGHT", 0, "recording height (0 = the frames' height)", int, min=0, max=8192),
        Setting("RECORD_MIN_FREE_BYTES", 50_000_000, "recording stops when the disk has less free space", int),
        Setting("REPORT_DIR", "reports", "folder the end-of-session reports go to (relative: to the working "
                "directory)"),
        Setting("REPORT_FALLBACK_DIR", "", "where a report goes when REPORT_DIR cannot be written (default: "
                "$XDG_STATE_HOME/engagement/reports, else ~/.local/state/..., else the temp folder)"),
        Setting("ROSTER", "", "CSV of display names (student,name or stream,student,name) for the report "
                "files on this box; never sent over MQTT, unused with CLASS_LEVEL_ONLY=1"),
        Setting("CLASS_LEVEL_ONLY", 0, "1 = reports carry no per-student rows", int),
        Setting("REPORT_RECOVER", 0, "1 = write the report of SESSION_ID (marked interrupted if it never ended) "
                "and exit; the launcher uses it for a class its crash cut short", int),
        Setting("REPORTED_SESSION_TTL", 24 * 3600, "seconds a session stays in Redis once its report is on "
                "disk; only such keys may be evicted (0 = keep them)", int, min=0),
        Setting("MESSAGING", 0, "1 = publish totals and the report to the local MQTT broker", int),
        Setting("MQTT_HOST", "127.0.0.1", "local MQTT broker host"),
        Setting("MQTT_PORT", 1883, "local MQTT broker port", int, min=1, max=65535),
        Setting("DEVICE_ID", "jetson-01", "device id used in MQTT topics"),
        Setting("MQTT_TOTALS_INTERVAL", 10.0, "seconds between totals published over MQTT", float),
        Setting("LIVE_VIDEO_FPS", 15.0, "most video frames a second per stream for the live page (each is a "
                "JPEG for every browser; 0 = every frame); every update still goes", float, min=0),
        PREVIEW_IN, UPDATES_IN, LIVE_OUT,
    ],
    # The teacher's live page, past sessions and the JSON API (services/web).
    "web": [
        Setting("REDIS_URL", "redis://127.0.0.1:6379/0", "Redis holding the running totals and the marks"),
        Setting("REDIS_PREFIX", "engagement", "prefix of every Redis key of the totals"),
        Setting("REPORT_DIR", "reports", "folder the end-of-session reports are read from (relative: to the "
                "working directory)"),
        Setting("ROSTER", "", "CSV of display names (student,name or stream,student,name) shown on the cards; "
                "unused with CLASS_LEVEL_ONLY=1"),
        Setting("CLASS_LEVEL_ONLY", 0, "1 = no per-student cards, marks or video", int),
        Setting("WEB_BIND", "127.0.0.1", "address the pages bind; any other than loopback needs WEB_TOKEN"),
        Setting("WEB_PORT", 8080, "port of the pages and the API", int, min=1, max=65535),
        Setting("WEB_TOKEN", "", "token (or password) every request must carry: Bearer or Basic auth"),
        LIVE_IN,
    ],
    # The reporter publishes totals every MQTT_TOTALS_INTERVAL (10 s) and the report at the end.
    "mqtt_bridge": [
        Setting("MQTT_HOST", "127.0.0.1", "local MQTT broker host"),
        Setting("MQTT_PORT", 1883, "local MQTT broker port", int, min=1, max=65535),
        Setting("DEVICE_ID", "jetson-01", "device id: local topics engagement/<id>/..., cloud client id"),
        Setting("CLOUD_MQTT_HOST", "", "AWS IoT Core endpoint (xxxx-ats.iot.<region>.amazonaws.com)"),
        Setting("CLOUD_MQTT_PORT", 8883, "cloud broker port (MQTT over TLS 1.2)", int),
        Setting("CLOUD_CA_FILE", "/certs/AmazonRootCA1.pem", "CA that signs the cloud broker's certificate"),
        Setting("CLOUD_CERT_FILE", "/certs/device.pem.crt", "device X.509 client certificate"),
        Setting("CLOUD_KEY_FILE", "/certs/private.pem.key", "private key of the client certificate"),
        Setting("CLOUD_TOPIC_PREFIX", "engagement", "cloud topics are <prefix>/<device id>/<type>"),
        Setting("BRIDGE_QUEUE_PATH", str(Path("data") / "bridge" / "queue.sqlite3"),
                "SQLite store-and-forward queue (on the data volume)"),
        Setting("BRIDGE_RETRY_BASE_SECONDS", 1.0, "first reconnect/resend delay; doubles per failure", float),
        Setting("BRIDGE_RETRY_MAX_SECONDS", 60.0, "cap of the reconnect/resend backoff", float),
        Setting("BRIDGE_ACK_TIMEOUT", 30.0, "seconds to wait for the cloud PUBACK before a resend", float),
        Setting("BRIDGE_MAX_INFLIGHT", 20, "unacknowledged cloud publishes at a time", int),
        Setting("BRIDGE_MAX_PAYLOAD_BYTES", 131072, "cloud payload limit (AWS IoT: 128 KB)", int),
        Setting("BRIDGE_MAX_PARTS", 64, "an oversized report is split into at most this many parts", int),
    ],
}


# `engagement run` alone: how the launcher supervises the services.
LAUNCHER: list[Setting] = [
    Setting("RECONNECT", "3", "a camera or stream that fails: 'forever' (unattended boxes) or the number of "
            "failed opens after which the class ends (3 tries take under 10 s)"),
    Setting("FIXED_PORTS", 0, "1 = use the configured metrics ports (for a Prometheus that scrapes them) "
            "instead of free ones", int),
    Setting("REPORT_TIMEOUT", 300.0, "seconds to wait for the report once the source has ended", float, min=1),
    Setting("STOP_TIMEOUT", 15.0, "seconds a stop (Ctrl-C/SIGTERM) may take: then every process is killed and "
            "the report written from Redis by the launcher", float, min=2, max=600),
    Setting("MAX_RESTARTS", 5, "restarts per service before giving up", int, min=0),
    Setting("OPEN", 0, "1 = open the live page in the default browser once it is up", int),
    # ipc measured faster per hop than TCP loopback here (bench/bushop.py: p50 0.6 vs 0.9 ms for a
    # 640x480 frame); compose's containers talk over tcp.
    Setting("TRANSPORT", "ipc", "how the launcher's local services talk: ipc (Unix sockets in a private "
            "folder) or tcp (loopback)", choices=("ipc", "tcp")),
    Setting("STATE_DIR", ".engagement", "what a run keeps to survive a crash: the private Redis's data and the "
            "runs in progress (relative: to the working directory)"),
]


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


class SettingError(ValueError):
    """A bad setting value or config file; str(exc) is the one line a user sees."""


def settings_for(service: str) -> list[Setting]:
    if service == "launcher":
        return LAUNCHER
    return COMMON + SERVICES.get(service, [])


def all_settings() -> list[Setting]:
    """Every setting once (a name shared by services, like REDIS_URL, at its first place)."""
    seen: dict[str, Setting] = {}
    for s in [*COMMON, *(s for group in SERVICES.values() for s in group), *LAUNCHER]:
        seen.setdefault(s.env, s)
    return list(seen.values())


_BOOL_WORDS = {"true": 1, "yes": 1, "on": 1, "false": 0, "no": 0, "off": 0}


def allowed(setting: Setting) -> str:
    """What a setting accepts, in words (for errors and the example file)."""
    if setting.choices:
        return "one of " + ", ".join(setting.choices)
    if setting.switch:
        return "0 or 1 (or true/false, yes/no, on/off)"
    if setting.type in (int, float):
        kind = "a whole number" if setting.type is int else "a number"
        if setting.min is not None and setting.max is not None:
            return f"{kind} from {setting.min:g} to {setting.max:g}"
        if setting.min is not None:
            return f"{kind} of at least {setting.min:g}"
        return kind
    return "text"


def parse_value(setting: Setting, raw: Any, origin: str) -> Any:
    """`raw` (text from a flag or the environment, or a YAML scalar) as the setting's type."""
    def bad(why: str) -> SettingError:
        return SettingError(f"setting {setting.env}={raw!r} ({origin}) {why}; allowed: {allowed(setting)}, "
                            f"default {setting.default!r}")

    if isinstance(raw, dict | list):
        raise bad("is not a single value")
    text = "" if raw is None else ("1" if raw is True else "0" if raw is False else str(raw)).strip()
    if setting.type is str:
        value: Any = "" if raw is None else str(raw)
    elif text == "":
        return setting.default  # compose passes unset optional numbers as empty strings
    elif setting.type is int:
        if text.lower() in _BOOL_WORDS:
            value = _BOOL_WORDS[text.lower()]
        else:
            try:
                value = int(text)
            except ValueError:
                raise bad("is not a whole number") from None
    elif setting.type is float:
        try:
            value = float(text)
        except ValueError:
            raise bad("is not a number") from None
        if value != value or value in (float("inf"), float("-inf")):
            raise bad("is not a finite number")
    else:
        value = setting.type(text)
    if setting.choices and value not in setting.choices:
        raise bad("is not a choice")
    if setting.switch and value not in (0, 1) and not (setting.default == -1 and value == -1):
        raise bad("is not a switch value")
    if setting.min is not None and value < setting.min:
        raise bad("is too small")
    if setting.max is not None and value > setting.max:
        raise bad("is too large")
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The YAML config file as {ENV_NAME: value}; keys are setting names in any case."""
    import difflib

    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SettingError(f"config file {path} does not exist; fix: give an existing file to --config "
                           f"(`engagement config --example > {path.name}` writes one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingError(f"config file {path} cannot be read ({exc}); fix: check its permissions") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "not valid YAML"
        raise SettingError(f"config file {path} is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingError(f"config file {path} must be a mapping of setting: value (see `engagement config "
                           f"--example`)")
    known = {s.env for s in all_settings()} | {"METRICS_PORT"}
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).upper().replace("-", "_")
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0].lower()}?)" if close else ""
            raise SettingError(f"config file {path}: unknown setting {key!r}{hint}; `engagement config --example` "
                               f"lists every setting")
        out[name] = value
    return out


def resolve(settings: list[Setting], flags: dict[str, Any], env: dict[str, str] | os._Environ,
            config_file: str | None) -> dict[str, Any]:
    """Values by precedence: flag > environment > config file > default, each validated."""
    from_file = read_config_file(config_file) if config_file else {}
    values: dict[str, Any] = {}
    for s in settings:
        if flags.get(s.dest) is not None:
            raw, origin = flags[s.dest], f"flag {s.flag}"
        elif s.env in env:
            raw, origin = env[s.env], "environment"
        elif s.env in from_file:
            raw, origin = from_file[s.env], f"config file {config_file}"
        else:
            values[s.dest] = s.default
            continue
        values[s.dest] = parse_value(s, raw, origin)
    return values


METRICS_PORT = Setting("METRICS_PORT", 0, "Prometheus metrics and /healthz port (0 = off)", int, min=0, max=65535)


def add_flags(parser: argparse.ArgumentParser | argparse._ArgumentGroup, settings: list[Setting],
              skip: set[str] = frozenset()) -> None:  # type: ignore[assignment]
    """One flag per setting; values stay text (None = not given) until `resolve` checks them."""
    for s in settings:
        if s.env in skip:
            continue
        extra = f"; {allowed(s)}" if s.choices or s.switch else ""
        kwargs: dict[str, Any] = {"nargs": "?", "const": "1"} if s.switch else {}
        parser.add_argument(s.flag, dest=s.dest, default=None, metavar=s.env, **kwargs,
                            help=f"{s.help} (env {s.env}, default {s.default!r}{extra})")


def build_parser(service: str, parser: argparse.ArgumentParser | None = None,
                 env: dict[str, str] | None = None) -> argparse.ArgumentParser:
    parser = parser or argparse.ArgumentParser(
        prog=f"engagement {service}",
        epilog="Each setting is also an environment variable (the name after 'env') and a key of the YAML "
               "config file; flags win over the environment, the environment over the file.")
    add_flags(parser, settings_for(service))
    parser.add_argument("--metrics-port", dest="metrics_port", default=None,
                        help=f"Prometheus metrics and /healthz port (env METRICS_PORT, default "
                             f"{METRICS_PORTS.get(service, 0)}; 0 = off)")
    parser.add_argument("--config", default=None,
                        help="YAML config file (env CONFIG_FILE; `engagement config --example` prints one)")
    return parser


def load_settings(service: str, argv: list[str] | None = None,
                  env: dict[str, str] | None = None) -> Settings:
    """Settings of `service`; raises SettingError (one line) for a bad value or config file."""
    env = os.environ if env is None else env
    flags = vars(build_parser(service, env=env).parse_args(argv))
    config_file = flags.pop("config") or env.get("CONFIG_FILE") or None
    settings = [*settings_for(service), Setting("METRICS_PORT", METRICS_PORTS.get(service, 0),
                                                METRICS_PORT.help, int, min=0, max=65535)]
    return Settings(service=service, values=resolve(settings, flags, env, config_file))


def env_names() -> set[str]:
    """Every environment variable the project reads (checked against compose's .env.example)."""
    return {s.env for s in all_settings()} | {"METRICS_PORT", "CONFIG_FILE"}


def _yaml_scalar(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value)


def example_yaml() -> str:
    """A config file with every setting at its default, each with a comment (`engagement config --example`)."""
    lines = ["# Engagement monitor settings. Use: engagement run --config engagement.yaml (or CONFIG_FILE=...).",
             "# Precedence: command-line flags > environment variables > this file > defaults.",
             "# Keys are the environment variable names in lower case; delete what you do not change.",
             "# Links (*_IN/*_OUT) and METRICS_PORT are chosen by `engagement run` itself; they matter to",
             "# services started one by one (compose, Kubernetes)."]
    seen: set[str] = set()
    groups = [("every service", COMMON), *SERVICES.items(), ("engagement run (the launcher)", LAUNCHER)]
    for group, settings in groups:
        fresh = [s for s in settings if s.env not in seen]
        if not fresh:
            continue
        lines += ["", f"# ---- {group} " + "-" * max(4, 70 - len(group))]
        for s in fresh:
            seen.add(s.env)
            lines.append(f"# {s.help} [env {s.env}; {allowed(s)}]")
            lines.append(f"{s.dest}: {_yaml_scalar(s.default)}")
    return "\n".join(lines) + "\n"


def report_fallback_dir(configured: str = "") -> Path:
    """Where a report goes when REPORT_DIR cannot be written: REPORT_FALLBACK_DIR, else the XDG
    state folder, else the temp folder (the first of them that can be created)."""
    import tempfile

    candidates = [configured] if configured else []
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    candidates += [str(Path(state) / "engagement" / "reports"),
                   str(Path(tempfile.gettempdir()) / "engagement-reports")]
    for c in candidates:
        try:
            Path(c).mkdir(parents=True, exist_ok=True)
            return Path(c)
        except OSError:
            continue
    return Path(tempfile.gettempdir())
