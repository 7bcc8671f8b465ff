"""The typed settings objects: one msgspec Struct per service and one for `engagement run`
(RunSettings: the services' Structs nested, and the launcher's own).

Each field is one setting, by its lower-case name, and is the one place of all it is: its type (a
setting with choices is a Literal of them) and, in its annotation (`about`), its default, help and
bounds. shared/ops/config.py reads its table from these Structs (flags, environment variables,
the config file, validation, `engagement config --example`); the Structs give the values resolved
from it real static types (`settings.fps` is a float to mypy). A setting several services take
alike (DETECTOR, CROP_SIZE...) is declared once as an annotated type and named in each Struct;
one whose help differs by service (REDIS_URL, FPS...) is declared in each.
`shared.ops.config.load_settings` builds a service's; the launcher's `resolve_run` builds the
run's from the same resolved values (services/launcher/launch_settings.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import msgspec

from shared.bus.links import BY_NAME

REPO_ROOT = Path(__file__).resolve().parents[2]  # shared/ops/settings.py -> the checkout

DetectorName = Literal["auto", "blazeface", "blazeface_short", "blazeface_full", "dnn", "haar"]


def about(default: Any, help: str, *, ge: float | None = None, le: float | None = None,
          form: str = "") -> msgspec.Meta:
    """A setting's facts besides its name and type: its default, its help, its bounds, the form its text must
    have (a name of shared/ops/config.py FORMS: "socket", "redis_url"). shared/ops/config.py reads them into its
    table: flags, environment, file, validation, `engagement config --example`."""
    return msgspec.Meta(ge=ge, le=le, description=help, extra={"default": default, "form": form})


def _link_out(name: str) -> msgspec.Meta:
    """The sending side of a link of shared/bus/links.py; a link not wired by default is empty = off."""
    link = BY_NAME[name]
    on = link.wired_by_default
    return about(link.out_spec() if on else "",
                 f"socket the {name} link is sent on" + ("" if on else " (empty = none)"), form="socket")


def _link_in(name: str) -> msgspec.Meta:
    """The receiving side of a link of shared/bus/links.py."""
    link = BY_NAME[name]
    on = link.wired_by_default
    return about(link.in_spec() if on else "",
                 f"socket the {name} link is received on" + ("" if on else " (empty = none)"), form="socket")


# Settings several services take, alike in each: declared once here, named in each Struct.
# How facedetect crops faces. Inference reads them too, to compare with the crop its model card
# says the model was trained on (shared/data/crop_record.py); `engagement-train faces` takes them as
# its defaults, so training sees the faces the edge sees.
Detector = Annotated[DetectorName, about("auto", help=
    "face detector (vision/detectors.py; auto = best measured recall, then speed)")]
CropSize = Annotated[int, about(224, "side of the square face crop sent downstream", ge=8, le=1024)]
CropMargin = Annotated[float, about(0.25, "margin added around each face box, as a fraction of its size")]
# Shared by the aggregator (writes) and the reporter (reads when Redis is gone): shared/data/journal.py.
JournalDir = Annotated[str, about("", help=
    "folder of the aggregator's journal (<folder>/<session>/journal.jsonl: what it accepted, kept until the report is"
    " written) and of the web's marks of a class not yet reported (marks.jsonl beside it); `engagement run` uses its"
    " run folder; empty = no journal")]
ReportFallbackDir = Annotated[str, about("", help=
    "where a report goes when REPORT_DIR cannot be written, and the journal when JOURNAL_DIR's disk is full (default:"
    " $XDG_STATE_HOME/engagement/reports, else ~/.local/state/..., else the temp folder)")]
# Alike in most services that take them (inference's and the web's say what else they hold).
RedisUrl = Annotated[str, about("redis://127.0.0.1:6379/0", "Redis holding the running totals", form="redis_url")]
RedisPrefix = Annotated[str, about("engagement", "prefix of every Redis key of the totals")]
ClassLevelOnly = Annotated[int, about(0, "1 = reports carry no per-student rows")]
MqttHost = Annotated[str, about("127.0.0.1", "local MQTT broker host")]
MqttPort = Annotated[int, about(1883, "local MQTT broker port", ge=1, le=65535)]


class CommonSettings(msgspec.Struct, kw_only=True):
    """The settings every service takes (config.COMMON)."""

    service: ClassVar[str] = ""
    session_id: Annotated[str, about("", "session id; the launcher sets one per run (default: time-based)")]
    class_id: Annotated[str, about("default-class", "class (course) the session belongs to")]
    stream_id: Annotated[str, about("cam0", "id of the video stream")]
    # Several cameras or screens in one class: each capture has its own STREAM_ID; every service
    # gets the whole list (the aggregator ends the session once every listed stream has ended).
    streams: Annotated[str, about("", help=
        "ids of every stream of the class, comma-separated, when it has several (the launcher sets it from its "
        "sources); empty = STREAM_ID alone")]
    log_level: Annotated[Literal["DEBUG", "INFO", "WARNING", "ERROR"], about("INFO", "log level")]
    metrics_host: Annotated[str, about("127.0.0.1", "address the metrics/health HTTP server binds")]
    models_dir: Annotated[str, about(str(REPO_ROOT / "models"), "where fetched weights and model bundles live")]
    hwm: Annotated[int, about(4, "ZeroMQ high-water mark (messages) on every bus socket", ge=1)]
    curve_server_key: Annotated[str, about("", "path to a CURVE server key file; set to authenticate bus peers")]
    # EU AI Act Article 5(1)(f): no emotion inference in education. When set, affect models
    # are refused and reports are class-level only.
    eu_ai_act_mode: Annotated[int, about(0, "1 = refuse affect models, class-level reports only")]
    cv_threads: Annotated[int, about(0, ge=-1, help=
        "OpenCV threads (0 = the service's budget (CPU_BUDGETS), -1 = the library's default)")]
    litert_threads: Annotated[int, about(0, ge=-1, help=
        "threads of each LiteRT interpreter (0 = the service's budget (CPU_BUDGETS), -1 = the library's default)")]
    ort_threads: Annotated[int, about(0, ge=-1, help=
        "threads of each ONNX Runtime session (0 = the service's budget (CPU_BUDGETS), -1 = the library's default)")]
    tf_intra_op_threads: Annotated[int, about(0, ge=-1, help=
        "TensorFlow threads inside one op (0 = the service's budget (CPU_BUDGETS), -1 = the library's default)")]
    tf_inter_op_threads: Annotated[int, about(0, ge=-1, help=
        "TensorFlow ops run side by side (0 = the service's budget (CPU_BUDGETS), -1 = the library's default)")]
    gather_seconds: Annotated[float, about(-1.0, ge=-1, le=1, help=
        "seconds a service lets its next messages gather after handling a run of them, for one wake-up (and in the "
        "aggregator one Redis round trip) a run rather than a message (-1 = the service's own: GATHER_SECONDS; "
        "0 = woken for each message)")]
    cpu_affinity: Annotated[str, about("", help=
        "CPUs a service may run on, e.g. 0 or 0-1 or 0,2 (empty = any; `engagement run` pins the light stages of a "
        "trained model on a 2-core machine: SMALL_BOX_AFFINITY)")]


class Settings(CommonSettings, kw_only=True):
    """A service's settings: the common ones and its metrics port; each service has a subclass."""

    metrics_port: int


class CaptureSettings(Settings, kw_only=True):
    """`engagement capture`: config.SERVICES["capture"]."""

    service: ClassVar[str] = "capture"
    source: Annotated[str, about("0", help=
        "webcam index, video file path, RTSP/HTTP URL, or screen, screen:N, region:X,Y,W,H, window:TITLE; `engagement"
        " run` takes several, one stream each (repeat --source [ID[@FPS]=]SOURCE, or a list in the config file)")]
    fps: Annotated[float, about(2.0, ge=0, le=240, help=
        "frames per second to emit (files: by the file's own timestamps; 0 = every frame)")]
    # A bound, not a size (shared/vision/frame_size.py): frames are scaled down to fit, aspect kept,
    # never up. 1920x1080 keeps a 1080p webcam's and a full-HD screen's small faces (a
    # gallery's, a class seen from the back) at their native size; see bench/frame_size.py.
    width: Annotated[int, about(1920, ge=0, le=8192, help=
        "most frame width: larger frames are scaled down, aspect kept (0 = native)")]
    height: Annotated[int, about(1080, ge=0, le=8192, help=
        "most frame height: larger frames are scaled down, aspect kept (0 = native)")]
    realtime: Annotated[int, about(0, "1 = pace a file source at --fps in wall-clock time (drops when slow)")]
    retry_max_seconds: Annotated[float, about(30.0, "cap of the reconnect backoff for cameras and streams", ge=0.01)]
    retry_limit: Annotated[int, about(0, ge=0, help=
        "give up after this many failed opens (0 = never; `engagement run --reconnect`)")]
    frame_encoding: Annotated[Literal["auto", "bgr", "jpeg"], about("auto", help=
        "frames on the bus: bgr = raw pixels; auto = a motion-JPEG file's own JPEGs as they are (decoded once, "
        "in facedetect: less CPU a stream), other sources' raw pixels; jpeg = always JPEG (encoded here when the "
        "source's frames are not JPEGs already)")]
    capture_state_dir: Annotated[str, about("", help=
        "folder where a running capture keeps its stream's state, so that a restart after a crash by a supervisor "
        "that cannot say so (Docker's restart policy) keeps the session and continues seq, and a video file plays on "
        "from where it was; empty = off (`engagement run` then keeps it in the run's folder)")]
    resume_window_seconds: Annotated[float, about(120.0, ge=1, help=
        "a capture state refreshed this recently is a crashed run of the same stream to resume; older is a new stream")]
    frames_out: Annotated[str, _link_out("frames")]
    preview_out: Annotated[str, _link_out("preview")]


class FacedetectSettings(Settings, kw_only=True):
    """`engagement facedetect`: config.SERVICES["facedetect"]."""

    service: ClassVar[str] = "facedetect"
    detector: Detector
    confidence: Annotated[float, about(0.5, "minimum detection confidence", ge=0, le=1)]
    detect_every: Annotated[int, about(3, ge=1, help=
        "run the detector every N frames and follow the faces in between (at once when a face is lost or the scene "
        "changes elsewhere); 1 = every frame")]
    crop_size: CropSize
    crop_margin: CropMargin
    track_iou: Annotated[float, about(0.3, "minimum IoU to keep a student's id from the last frame")]
    track_max_age: Annotated[float, about(10.0, "seconds a lost student's id is kept for re-identification")]
    reid_seconds: Annotated[float, about(10.0, ge=0, help=
        "seconds a lost student is remembered by look: a face that comes back within them and looks like them gets "
        "their id wherever it is in the frame (TRACK_MAX_AGE: where it was)")]
    track_min_seconds: Annotated[float, about(1.0, ge=0, help=
        "seconds a new face must be seen before it is a student (a hand or a passer-by seen for less is set aside and"
        " counted in the report); its frames wait until then, so nothing of a real newcomer is lost; 0 = every face "
        "at once")]
    gallery: Annotated[Literal["auto", "off"], about("auto", help=
        "auto = find a video call's participant grid and give each tile a student; off = plain face detection")]
    gallery_names: Annotated[Literal["ocr", "off"], about("off", help=
        "ocr = read each call tile's name label (RapidOCR: pip install -e '.[ocr]') and keep a student's id by it "
        "when the grid reflows; names stay on this box (Redis), never read with CLASS_LEVEL_ONLY=1; off = ids by tile"
        " place and look")]
    redis_url: RedisUrl
    redis_prefix: RedisPrefix
    class_level_only: ClassLevelOnly
    frames_in: Annotated[str, _link_in("frames")]
    faces_out: Annotated[str, _link_out("faces")]


class SequencerSettings(Settings, kw_only=True):
    """`engagement sequencer`: config.SERVICES["sequencer"]."""

    service: ClassVar[str] = "sequencer"
    sequence_length: Annotated[int, about(1, "crops per student per sample (model card's sequence length)", ge=1)]
    stride: Annotated[int, about(1, "frames between two samples of the same student", ge=1)]
    student_timeout: Annotated[float, about(10.0, "seconds after which an unseen student's buffer is dropped")]
    faces_in: Annotated[str, _link_in("faces")]
    batches_out: Annotated[str, _link_out("batches")]


class InferenceSettings(Settings, kw_only=True):
    """`engagement inference`: config.SERVICES["inference"]."""

    service: ClassVar[str] = "inference"
    model: Annotated[str, about("baseline", "'baseline' (face-mesh attention) or a model bundle directory")]
    detector: Detector
    crop_size: CropSize
    crop_margin: CropMargin
    allow_crop_mismatch: Annotated[int, about(0, help=
        "1 = start even when the model card's crop (detector, margin, size, colour order) differs from facedetect's "
        "DETECTOR, CROP_MARGIN and CROP_SIZE (one line says how)")]
    engine: Annotated[Literal["auto", "keras", "tflite", "predict", "onnx"], about("auto", help=
        "how a trained bundle runs (auto: the fastest that agrees with Keras)")]
    # Engines rank differently by batch size (LiteRT led at 1 face, ONNX Runtime at 8 on 2 cores).
    engine_probe_faces: Annotated[int, about(8, ge=1, le=64, help=
        "faces per frame ENGINE=auto times the engines at, besides one (the class's usual number); it keeps the "
        "lowest total")]
    trt_cache_dir: Annotated[str, about("", help=
        "where ONNX Runtime's TensorRT provider keeps the engines it builds ('' = ~/.cache/engagement/tensorrt)")]
    trt_fp16: Annotated[int, about(1, ge=0, le=1, help=
        "1 = TensorRT may compute in float16 (ENGINE=auto still checks it against Keras)")]
    # In seconds of the video, so it means the same at every FPS (5 frames were 2.5 s at 2 FPS and
    # hid a 1.5 s glance away).
    smoothing_seconds: Annotated[float, about(1.0, ge=0, le=60, help=
        "seconds of video the baseline averages its attention signals over (0 = no smoothing)")]
    # The old setting, still read: N frames at FPS (so compose files and scripts keep working).
    smoothing_window: Annotated[int, about(0, ge=0, help=
        "deprecated: frames to average over, turned into seconds at FPS (0 = use SMOOTHING_SECONDS)")]
    fps: Annotated[float, about(2.0, ge=0, le=240, help=
        "the capture's frames per second (turns SMOOTHING_WINDOW into seconds)")]
    gaze: Annotated[int, about(0, help=
        "1 = the baseline adds iris gaze to its signals and reads eye openness from the iris model's lids (about 3 ms"
        " more a face)")]
    baseline_thresholds: Annotated[str, about("", help=
        "baseline card with fitted thresholds (engagement-train fit-baseline); empty = the documented defaults")]
    neutral_pose: Annotated[int, about(1, help=
        "1 = the baseline measures head turns from each student's learned neutral pose "
        "(services/inference/BASELINE.md)")]
    neutral_learn_seconds: Annotated[float, about(10.0, "seconds of steady pose a neutral pose is learned from", ge=0)]
    redis_url: Annotated[str, about("redis://127.0.0.1:6379/0", help=
        "Redis holding the running totals and the teacher's marks (inference reads the marks: they re-anchor neutral "
        "poses)", form="redis_url")]
    redis_prefix: Annotated[str, about("engagement", "prefix of every Redis key of the totals and the marks")]
    # Several streams (cameras) in one class: their batches waiting together go through one model
    # call (a GPU or XNNPACK runs 8 faces in far less than 8 times one face's time).
    max_batch_faces: Annotated[int, about(32, ge=1, le=1024, help=
        "most faces in one model call: batch messages waiting together, of any stream, are run at once up to this "
        "many faces")]
    slowdown: Annotated[float, about(0.0, "extra seconds per model call, for fault-injection tests only")]
    ack_timeout: Annotated[float, about(3.0, "seconds before an unacknowledged predictions message is resent")]
    ack_window: Annotated[int, about(2000, "sent-but-unacknowledged messages kept for resending")]
    batches_in: Annotated[str, _link_in("batches")]
    predictions_out: Annotated[str, _link_out("predictions")]
    acks_in: Annotated[str, _link_in("acks")]


class AggregatorSettings(Settings, kw_only=True):
    """`engagement aggregator`: config.SERVICES["aggregator"]."""

    service: ClassVar[str] = "aggregator"
    redis_url: RedisUrl
    redis_prefix: RedisPrefix
    backlog_max: Annotated[int, about(10000, "frames kept in memory while Redis is unreachable")]
    journal_dir: JournalDir
    report_fallback_dir: ReportFallbackDir
    journal_handoff_seconds: Annotated[float, about(3.0, ge=0.1, le=3600, help=
        "Redis unreachable this long, a class that has ended gets its report from the journal (the reporter's) rather"
        " than wait for it")]
    predictions_in: Annotated[str, _link_in("predictions")]
    updates_out: Annotated[str, _link_out("updates")]
    acks_out: Annotated[str, _link_out("acks")]


class ReporterSettings(Settings, kw_only=True):
    """`engagement reporter`: config.SERVICES["reporter"]."""

    service: ClassVar[str] = "reporter"
    redis_url: RedisUrl
    redis_prefix: RedisPrefix
    headless: Annotated[int, about(-1, "1 = no window; default: headless when there is no display")]
    record: Annotated[int, about(0, "1 = record the overlaid video")]
    record_path: Annotated[str, about("", "folder for recordings (default: REPORT_DIR, beside the session's report)")]
    record_filename: Annotated[str, about("", "recording file name (default <session>.avi)")]
    record_codec: Annotated[str, about("MJPG", "FourCC of the recording codec")]
    fps: Annotated[float, about(2.0, "the capture's frames per second (the recording's rate by default)", ge=0, le=240)]
    record_fps: Annotated[float, about(0.0, "frame rate of the recording (0 = the capture's FPS)", ge=0, le=240)]
    record_width: Annotated[int, about(0, ge=0, le=8192, help=
        "most recording width: the frames are scaled down to fit, aspect kept (0 = the frames' width)")]
    record_height: Annotated[int, about(0, ge=0, le=8192, help=
        "most recording height: the frames are scaled down to fit, aspect kept (0 = the frames' height)")]
    record_min_free_bytes: Annotated[int, about(50_000_000, "recording stops when the disk has less free space")]
    report_dir: Annotated[str, about("reports", help=
        "folder the end-of-session reports go to (relative: to the working directory)")]
    report_fallback_dir: ReportFallbackDir
    journal_dir: JournalDir
    roster: Annotated[str, about("", help=
        "CSV of display names (student,name or stream,student,name) for the report files on this box; never sent over"
        " MQTT, unused with CLASS_LEVEL_ONLY=1")]
    class_level_only: ClassLevelOnly
    report_recover: Annotated[int, about(0, help=
        "1 = write the report of SESSION_ID (marked interrupted if it never ended) and exit; the launcher uses it for"
        " a class its crash cut short")]
    reported_session_ttl: Annotated[int, about(24 * 3600, ge=0, help=
        "seconds a session stays in Redis once its report is on disk; only such keys may be evicted (0 = keep them)")]
    messaging: Annotated[int, about(0, "1 = publish totals and the report to the local MQTT broker")]
    mqtt_host: MqttHost
    mqtt_port: MqttPort
    device_id: Annotated[str, about("jetson-01", "device id used in MQTT topics")]
    mqtt_totals_interval: Annotated[float, about(10.0, "seconds between totals published over MQTT")]
    outbox_path: Annotated[str, about("", help=
        "SQLite outbox where the report and final totals wait until the local MQTT broker takes them (default: "
        "REPORT_DIR/.outbox.sqlite3)")]
    live_video_fps: Annotated[float, about(15.0, ge=0, help=
        "most video frames a second per stream for the live page (each is a JPEG for every browser; 0 = every frame);"
        " every update still goes")]
    preview_in: Annotated[str, _link_in("preview")]
    updates_in: Annotated[str, _link_in("updates")]
    live_out: Annotated[str, _link_out("live")]


class WebSettings(Settings, kw_only=True):
    """`engagement web`: config.SERVICES["web"]."""

    service: ClassVar[str] = "web"
    redis_url: Annotated[str, about("redis://127.0.0.1:6379/0", "Redis holding the running totals and the marks",
                                    form="redis_url")]
    redis_prefix: RedisPrefix
    report_dir: Annotated[str, about("reports", help=
        "folder the end-of-session reports are read from (relative: to the working directory)")]
    report_fallback_dir: ReportFallbackDir
    roster: Annotated[str, about("", help=
        "CSV of display names (student,name or stream,student,name) shown on the cards; unused with "
        "CLASS_LEVEL_ONLY=1")]
    class_level_only: Annotated[int, about(0, "1 = no per-student cards, marks or video")]
    journal_dir: JournalDir
    attention_alert_seconds: Annotated[float, about(60.0, ge=1, le=3600, help=
        "seconds a student stays at level 2 or more before the live page lists them under Needs attention (and the "
        "session page marks it)")]
    web_bind: Annotated[str, about("127.0.0.1", "address the pages bind; any other than loopback needs WEB_TOKEN")]
    web_port: Annotated[int, about(8080, "port of the pages and the API", ge=1, le=65535)]
    web_token: Annotated[str, about("", "token (or password) every request must carry: Bearer or Basic auth")]
    web_allowed_hosts: Annotated[str, about("", help=
        "names the page may be reached by besides its address, localhost and this machine's name, comma-separated (* "
        "= any; other names get 421: no DNS rebinding)")]
    live_in: Annotated[str, _link_in("live")]


class MqttBridgeSettings(Settings, kw_only=True):
    """`engagement mqtt-bridge`: config.SERVICES["mqtt_bridge"]."""

    service: ClassVar[str] = "mqtt_bridge"
    mqtt_host: MqttHost
    mqtt_port: MqttPort
    device_id: Annotated[str, about("jetson-01", "device id: local topics engagement/<id>/..., cloud client id")]
    cloud_mqtt_host: Annotated[str, about("", "AWS IoT Core endpoint (xxxx-ats.iot.<region>.amazonaws.com)")]
    cloud_mqtt_port: Annotated[int, about(8883, "cloud broker port (MQTT over TLS 1.2)")]
    cloud_ca_file: Annotated[str, about("/certs/AmazonRootCA1.pem", "CA that signs the cloud broker's certificate")]
    cloud_cert_file: Annotated[str, about("/certs/device.pem.crt", "device X.509 client certificate")]
    cloud_key_file: Annotated[str, about("/certs/private.pem.key", "private key of the client certificate")]
    cloud_topic_prefix: Annotated[str, about("engagement", "cloud topics are <prefix>/<device id>/<type>")]
    bridge_queue_path: Annotated[str, about(str(Path("data") / "bridge" / "queue.sqlite3"), help=
        "SQLite store-and-forward queue (on the data volume)")]
    bridge_retry_base_seconds: Annotated[float, about(1.0, "first reconnect/resend delay; doubles per failure")]
    bridge_retry_max_seconds: Annotated[float, about(60.0, "cap of the reconnect/resend backoff")]
    bridge_ack_timeout: Annotated[float, about(30.0, "seconds to wait for the cloud PUBACK before a resend")]
    bridge_max_inflight: Annotated[int, about(20, "unacknowledged cloud publishes at a time")]
    bridge_max_payload_bytes: Annotated[int, about(131072, "cloud payload limit (AWS IoT: 128 KB)")]
    bridge_max_parts: Annotated[int, about(64, "an oversized report is split into at most this many parts")]


R = TypeVar("R", bound="RunSettings")


class LauncherSettings(msgspec.Struct, kw_only=True):
    """`engagement run`'s own settings: how the launcher supervises the services (config.LAUNCHER)."""

    reconnect: Annotated[str, about("3", help=
        "a camera or stream that fails: 'forever' (unattended boxes) or the number of failed opens after which the "
        "class ends (3 tries take under 10 s)")]
    fixed_ports: Annotated[int, about(0, help=
        "1 = use the configured metrics ports (for a Prometheus that scrapes them) instead of free ones")]
    report_timeout: Annotated[float, about(300.0, "seconds to wait for the report once the source has ended", ge=1)]
    stop_timeout: Annotated[float, about(15.0, ge=2, le=600, help=
        "seconds a stop (Ctrl-C/SIGTERM) may take: then every process is killed and the report written from Redis by "
        "the launcher")]
    max_restarts: Annotated[int, about(5, "restarts per service before giving up", ge=0)]
    open: Annotated[int, about(0, "1 = open the live page in the default browser once it is up")]
    # ipc measured faster per hop than TCP loopback here (bench/bushop.py: p50 0.6 vs 0.9 ms for a
    # 640x480 frame); compose's containers talk over tcp.
    transport: Annotated[Literal["ipc", "tcp"], about("ipc", help=
        "how the launcher's local services talk: ipc (Unix sockets in a private folder) or tcp (loopback)")]
    bus_auth: Annotated[Literal["curve", "off"], about("curve", help=
        "TRANSPORT=tcp: curve = the run makes its own CURVE key pair (unless CURVE_SERVER_KEY is set) so no other "
        "process can join a link; off = plain TCP, any local process can")]
    state_dir: Annotated[str, about(".engagement", help=
        "what a run keeps to survive a crash: the private Redis's data and the runs in progress (relative: to the "
        "working directory)")]


class RunSettings(msgspec.Struct, kw_only=True):
    """`engagement run`: each pipeline service's own Struct (above), the settings every service
    takes, and the launcher's own; REDIS_URL empty = a private redis-server.

    Nested rather than restated: a setting is declared once, in its service's Struct. A setting
    several services take (SESSION_ID, REDIS_URL, FPS...) is resolved once by the launcher and the
    same value is in each of them; `set` changes it everywhere, so they never differ. The links
    and METRICS_PORT of the service Structs stay empty here: plan.py plans them per process.
    """

    service: ClassVar[str] = "launcher"
    common: CommonSettings
    capture: CaptureSettings
    facedetect: FacedetectSettings
    sequencer: SequencerSettings
    inference: InferenceSettings
    aggregator: AggregatorSettings
    reporter: ReporterSettings
    web: WebSettings
    launcher: LauncherSettings

    def parts(self) -> list[msgspec.Struct]:
        """The nested Structs: the common settings, each service's, the launcher's."""
        return [getattr(self, name) for name in RunSettings.__struct_fields__]

    def set(self, **changes: object) -> None:
        """Change settings by name in every part that takes them (a name no part has is an error)."""
        for name, value in changes.items():
            holders = [part for part in self.parts() if name in part.__struct_fields__]
            if not holders:
                raise AttributeError(f"no run setting {name!r}")
            for part in holders:
                setattr(part, name, value)

    def replaced(self: R, **changes: object) -> R:
        """A copy with `changes` (by setting name, as `set`); this one stays as it is."""
        copy = msgspec.structs.replace(self, **{name: msgspec.structs.replace(getattr(self, name))
                                                for name in RunSettings.__struct_fields__})
        copy.set(**changes)
        return copy


BY_SERVICE: dict[str, type[Settings]] = {
    "capture": CaptureSettings,
    "facedetect": FacedetectSettings,
    "sequencer": SequencerSettings,
    "inference": InferenceSettings,
    "aggregator": AggregatorSettings,
    "reporter": ReporterSettings,
    "web": WebSettings,
    "mqtt_bridge": MqttBridgeSettings,
}
