"""Checks that can fail before a class: run by `engagement check` (a table) and by `engagement
run` before it starts anything (the first failure: one line, exit code 2).

A check is a small function of the run's typed settings (`ctx.settings`, a RunSettings of
shared/ops/settings.py; the process environment is `process_environment()`) that returns a
`Result`, or None when it does not apply;
`@check` registers it, in table order. To add one (e.g. a secret left at its example value),
write, in this module or any module imported before the checks run:

    @check("secrets")
    def _secrets(ctx: Context) -> Result | None:
        password = process_environment().get("REDIS_PASSWORD")
        if password is None:
            return None
        if password in ("", "change-me"):
            return fail("secrets", "REDIS_PASSWORD is empty or the example's", "set your own in compose/.env")
        return ok("secrets", "REDIS_PASSWORD set")

`fail(name, problem, fix)` is what `engagement run` prints as its one line; `ok(name,
detail, warning="...")` passes with a note.

Every check must return within a few seconds and leave nothing behind (a folder it creates
to try a write is removed again): the whole table has a 5 s budget.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from services.launcher.session_claim import claim_key, describe, holder_gone
from shared.data.roster import RosterError, load_roster
from shared.ops.config import process_environment
from shared.ops.ports import is_free
from shared.ops.settings import RunSettings
from shared.vision.screen import ScreenError, ScreenGrabber, open_camera, source_kind

BUDGET_SECONDS = 4.5  # all checks together, so a failure is reported within 5 s
SOURCE_TIMEOUT_MS = 3000


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False  # ok to go on, but worth saying

    def line(self) -> str:
        """The one line a failure is reported with."""
        return f"{self.name}: {self.detail}" + (f"; fix: {self.fix}" if self.fix else "")


@dataclass
class Context:
    """What the checks look at: the run's typed settings, and what the launcher knows besides."""

    settings: RunSettings
    private_redis: bool = False  # no REDIS_URL: `engagement run` starts its own
    extra: dict[str, Any] = field(default_factory=dict)


CheckFn = Callable[[Context], "Result | None"]
CHECKS: list[tuple[str, CheckFn]] = []


_Check = TypeVar("_Check", bound=CheckFn)


def check(name: str) -> Callable[[_Check], _Check]:
    def register(fn: _Check) -> _Check:
        CHECKS.append((name, fn))
        return fn
    return register


def ok(name: str, detail: str, warning: str = "") -> Result:
    return Result(name, True, detail + (f" ({warning})" if warning else ""), warning=bool(warning))


def fail(name: str, detail: str, fix: str) -> Result:
    return Result(name, False, detail, fix)


def run_checks(ctx: Context, budget: float = BUDGET_SECONDS,
               checks: list[tuple[str, CheckFn]] | None = None) -> list[Result]:
    """Every check at once (each on a daemon thread), within `budget` seconds in all."""
    checks = CHECKS if checks is None else checks
    results: dict[int, Result | None] = {}

    def one(i: int, name: str, fn: CheckFn) -> None:
        try:
            results[i] = fn(ctx)
        except Exception as exc:  # a check that breaks is a failed check, never a traceback
            results[i] = fail(name, f"check failed: {type(exc).__name__}: {exc}", "see the message")

    threads = [threading.Thread(target=one, args=(i, n, f), daemon=True) for i, (n, f) in enumerate(checks)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + budget
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    out = []
    for i, (name, _) in enumerate(checks):
        if i not in results:
            out.append(fail(name, f"no answer within {budget:.1f} s", "see that the service it checks answers"))
        elif (answer := results[i]) is not None:
            out.append(answer)
    return out


def table(results: list[Result]) -> str:
    width = max([len(r.name) for r in results] + [5])
    lines = [f"{'check':<{width}}  result  detail"]
    for r in results:
        state = "ok" if r.ok and not r.warning else "warn" if r.ok else "FAIL"
        lines.append(f"{r.name:<{width}}  {state:<6}  {r.detail}" + (f"; fix: {r.fix}" if r.fix else ""))
    return "\n".join(lines)


# --- folders --------------------------------------------------------------------------------

_FOLDERS = threading.Lock()  # checks run at once; two may try the same folder (reports, recordings)


def try_writable(folder: Path) -> str | None:
    """None if `folder` can be created and written; else why not. Leaves nothing behind."""
    with _FOLDERS:
        return _try_writable(folder)


def _try_writable(folder: Path) -> str | None:
    # Another class starting at the same moment may remove a folder it made for its own check
    # between our look and our write (a CI run: "No such file or directory"; or it looks like a
    # file for an instant): look again. A real fault answers the same each time.
    why = None
    for _ in range(3):
        why = _try_writable_once(folder)
        if why is None:
            return None
    return why


def _try_writable_once(folder: Path) -> str | None:
    created: list[Path] = []
    try:
        missing = []
        p = folder
        while not p.exists():
            missing.append(p)
            if p.parent == p:
                break
            p = p.parent
        if p.exists() and not p.is_dir():
            return f"{p} is a file, not a folder"
        for d in reversed(missing):
            try:
                d.mkdir()
            except FileExistsError:  # another class starting at the same moment made it: not ours
                continue
            created.append(d)
        fd, tmp = tempfile.mkstemp(prefix=".engagement-check-", dir=folder)
        os.close(fd)
        os.unlink(tmp)
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        for d in reversed(created):
            try:
                d.rmdir()
            except OSError:
                pass


@check("report folder")
def _report_folder(ctx: Context) -> Result:
    folder = Path(ctx.settings.reporter.report_dir)
    why = try_writable(folder)
    if why:
        return fail("report folder", f"cannot write reports to {folder} ({why})",
                    "give a writable folder with --report-dir (or REPORT_DIR)")
    return ok("report folder", f"{folder.resolve()} writable")


@check("recording")
def _recording(ctx: Context) -> Result | None:
    if not ctx.settings.reporter.record:
        return None
    folder = Path(ctx.settings.reporter.record_path or ctx.settings.reporter.report_dir)
    why = try_writable(folder)
    if why:
        return fail("recording", f"cannot write recordings to {folder} ({why})",
                    "give a writable folder with --record-path, or leave out --record")
    p = folder
    while not p.exists():
        p = p.parent
    free = shutil.disk_usage(p).free
    need = int(ctx.settings.reporter.record_min_free_bytes) * 2
    if free < need:
        return fail("recording", f"only {free // 1_000_000} MB free under {folder}, recording needs at least "
                    f"{need // 1_000_000} MB",
                    "free disk space, record elsewhere (--record-path) or leave out --record")
    return ok("recording", f"{folder.resolve()} writable, {free // 1_000_000_000} GB free")


# --- the source -------------------------------------------------------------------------------



@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """File descriptor 2 to /dev/null for a moment (C libraries' own messages)."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


@check("source")
def _source(ctx: Context) -> Result:
    import cv2

    source = str(ctx.settings.capture.source)
    kind = source_kind(source)
    forever = ctx.settings.launcher.reconnect.lower() == "forever"
    # OpenCV and FFmpeg log their own warnings for a missing device or URL; the check's one line says it.
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    if kind == "screen":
        return _screen_source(ctx, source)
    if kind == "file":
        path = Path(source)
        if not path.exists():
            return fail("source", f"video file {source} does not exist", "give the path of a video file, a camera "
                        "index (0) or an RTSP/HTTP URL to --source")
        if not path.is_file():
            return fail("source", f"{source} is a folder, not a video file", "give one video file to --source")
        cap = cv2.VideoCapture(source)
    else:
        with _quiet_stderr():  # FFmpeg writes its own line straight to fd 2
            if kind == "camera":
                cap = open_camera(source)
            else:
                cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG,
                                       [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, SOURCE_TIMEOUT_MS,
                                        cv2.CAP_PROP_READ_TIMEOUT_MSEC, SOURCE_TIMEOUT_MS])
    try:
        got, image = cap.read() if cap.isOpened() else (False, None)
    finally:
        cap.release()
    if got and image is not None:
        sizes, warning = _sizes(ctx, image)
        return ok("source", f"{kind} {source}: {sizes}, a frame decodes", warning)
    if kind == "file":
        return fail("source", f"{source} has no frame OpenCV can decode", "give a video file (e.g. .avi, .mp4)")
    what = f"camera {source} does not open" if kind == "camera" else f"stream {source} does not answer"
    if forever:
        return ok("source", what, "--reconnect forever: capture keeps trying")
    fix = ("plug the camera in, or give its index or device (ls /dev/video*)" if kind == "camera"
           else "check the URL and that the camera is on the network")
    return fail("source", what, fix + "; --reconnect forever waits for it")


def source_check_of(stream_id: str, source: str) -> tuple[str, CheckFn]:
    """The source check of one stream of a class with several, named by its stream."""
    def one(ctx: Context) -> Result:
        result = _source(Context(ctx.settings.replaced(source=source)))
        return dataclasses.replace(result, name=f"source {stream_id}")
    return f"source {stream_id}", one


def _sizes(ctx: Context, image: Any) -> tuple[str, str]:
    """The source's native size and the size processed (WIDTH x HEIGHT bound it), and a warning
    when the bound throws away much of the picture."""
    from shared.vision import frame_size  # noqa: PLC0415  (cv2, like the source check itself: loaded when a check runs)

    return frame_size.describe((int(image.shape[1]), int(image.shape[0])), ctx.settings.capture.width,
                               ctx.settings.capture.height)


def _screen_source(ctx: Context, source: str) -> Result:
    try:
        grabber = ScreenGrabber(source)
    except ScreenError as exc:
        return fail("source", str(exc), "start the call's window first, or give screen, screen:N, region:X,Y,W,H "
                    "or window:TITLE on an X11 display (DISPLAY set)")
    try:
        image = grabber.grab()
    finally:
        grabber.release()
    if image is None:
        return fail("source", f"{source} gives no image", "check that the window is on the screen")
    sizes, warning = _sizes(ctx, image)
    return ok("source", f"screen {source}: {sizes}, a grab works", warning)


# --- Redis, model, ports ----------------------------------------------------------------------

def safe_url(url: str) -> str:
    """A Redis URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


@check("roster")
def _roster(ctx: Context) -> Result | None:
    path = ctx.settings.reporter.roster
    if not path:
        return None
    if ctx.settings.reporter.class_level_only or ctx.settings.common.eu_ai_act_mode:
        return ok("roster", f"{path} not read: reports are class-level only")
    try:
        roster = load_roster(path)
    except RosterError as exc:
        return fail("roster", str(exc), "fix the file, or leave ROSTER empty for ids only")
    return ok("roster", f"{path}: {len(roster)} names (kept on this box, never sent over MQTT)")


@check("gallery names")
def _gallery_names(ctx: Context) -> Result | None:
    if ctx.settings.facedetect.gallery_names != "ocr":
        return None
    if ctx.settings.reporter.class_level_only or ctx.settings.common.eu_ai_act_mode:
        return ok("gallery names", "tile labels not read: reports are class-level only")
    if ctx.settings.facedetect.gallery == "off":
        return ok("gallery names", "not read", "GALLERY=off: no call tiles to read")
    if importlib.util.find_spec("rapidocr_onnxruntime") is None:
        return fail("gallery names", "GALLERY_NAMES=ocr but rapidocr-onnxruntime is not installed",
                    "pip install -e '.[ocr]' && pip install --no-deps rapidocr-onnxruntime==1.4.4 "
                    "(scripts/setup.sh does), or GALLERY_NAMES=off")
    return ok("gallery names", "tile labels read by RapidOCR (kept on this box, never sent over MQTT)")


@check("redis")
def _redis(ctx: Context) -> Result:
    if ctx.private_redis:
        if shutil.which("redis-server"):
            return ok("redis", "no REDIS_URL: a private redis-server will start")
        return fail("redis", "no REDIS_URL and no redis-server on PATH",
                    "install redis-server (./scripts/setup.sh does) or set REDIS_URL")
    import redis

    url = str(ctx.settings.aggregator.redis_url)
    try:
        client = redis.Redis.from_url(url, socket_timeout=1.5, socket_connect_timeout=1.5)
        client.ping()
    except redis.AuthenticationError:
        if "@" not in url:
            return fail("redis", f"Redis at {safe_url(url)} needs a password",
                        "put it in REDIS_URL (redis://:PASSWORD@host:port/0)")
        return fail("redis", f"Redis at {safe_url(url)} refused the password",
                    "set the right password in REDIS_URL (redis://:PASSWORD@host:port/0)")
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc):
            return fail("redis", f"Redis at {safe_url(url)} needs a password",
                        "put it in REDIS_URL (redis://:PASSWORD@host:port/0)")
        return fail("redis", f"Redis at {safe_url(url)} answered with an error ({exc})", "check REDIS_URL")
    except (redis.RedisError, ValueError) as exc:
        return fail("redis", f"Redis at {safe_url(url)} is not reachable ({str(exc).rstrip('.')})",
                    "start Redis there, correct REDIS_URL, or unset it for a private redis-server")
    session = ctx.settings.common.session_id
    if session and ctx.extra.get("session_given") and client.exists(
            f"{ctx.settings.aggregator.redis_prefix}:session:{session}:meta"):
        return fail("redis", f"session id {session} is already used in this Redis",
                    "give another --session-id, or leave it out for a new unique one")
    raw = client.get(claim_key(ctx.settings.aggregator.redis_prefix, session)) if session else None
    holder = raw.decode(errors="replace") if isinstance(raw, bytes) else ""
    if holder and not holder_gone(holder):  # `engagement run` claims it atomically after these checks
        return fail("redis", f"session id {session} is in use by another run ({describe(holder)})",
                    "give another --session-id, or leave it out for a new unique one")
    return ok("redis", f"{safe_url(url)} answers", _keeps_nothing(client))


def _keeps_nothing(client: Any) -> str:
    """A warning when this Redis keeps nothing over a restart (no append-only file, no save points):
    the totals come back from the aggregator's journal, the teacher's marks would not. "" when it keeps
    its data, or cannot say (CONFIG renamed or refused, as on managed services)."""
    import redis

    try:
        config = {**client.config_get("appendonly"), **client.config_get("save")}
    except redis.RedisError:
        return ""
    if str(config.get("appendonly", "")).lower() == "yes" or str(config.get("save", "")).strip():
        return ""
    return ("it keeps nothing over a restart, with appendonly no and no save points: the marks teachers make on "
            "past sessions' pages would go with it (a class's own are kept on disk until its report); turn "
            "appendonly on there, as compose's Redis has it")


@check("model")
def _model(ctx: Context) -> Result:
    import importlib.util

    model, models_dir = str(ctx.settings.inference.model), Path(ctx.settings.common.models_dir)
    if model == "baseline":
        mesh = models_dir / "face_landmark.tflite"
        if not mesh.is_file():
            return fail("model", f"the baseline's face mesh {mesh} is missing", "run `engagement fetch-models`")
        if importlib.util.find_spec("ai_edge_litert") is None:
            return fail("model", "the LiteRT runtime (ai-edge-litert) is not installed", "pip install ai-edge-litert")
        return ok("model", f"attention baseline ({mesh.name} present)")
    from shared.data.model_card import ModelCard

    bundle = Path(model)
    if not bundle.is_dir() and not bundle.is_absolute() and (models_dir / model).is_dir():
        bundle = models_dir / model  # MODEL=<name> of a bundle under MODELS_DIR
    if not bundle.is_dir():
        return fail("model", f"model bundle {model} does not exist (a bundle is a folder with model_card.json)",
                    "give 'baseline' or a folder made by `engagement-train export` to --model")
    try:
        card = ModelCard.load(bundle)
    except Exception as exc:
        return fail("model", f"{bundle / 'model_card.json'} is not a valid model card ({exc})",
                    "re-export the bundle with `engagement-train export`")
    if ctx.settings.common.eu_ai_act_mode and card.affect:
        return fail("model", f"{model} is an affect model and EU_AI_ACT_MODE=1 forbids it",
                    "use --model baseline, or unset EU_AI_ACT_MODE where the law allows")
    files = {p.name for p in bundle.iterdir()}
    if not files & {"model.keras", "model.tflite", "model.onnx"}:
        return fail("model", f"{model} has none of model.keras, model.tflite, model.onnx", "re-export the bundle")
    wanted = _engines_for(ctx.settings.inference.engine, files, card)
    if not wanted:
        # services/inference stops with the same verdict (NoEngineError): never the baseline instead.
        engine = ctx.settings.inference.engine
        return fail("model", f"no engine here can run {model} with ENGINE={engine} (files {sorted(files)})",
                    "pip install -e '.[ml]' (TensorFlow, ONNX Runtime), or re-export the bundle with "
                    "`engagement-train export` (model.onnx and model.tflite, checked against Keras)")
    return ok("model", f"bundle {card.name} ({card.kind}), runs with {', '.join(wanted)}")


def _engines_for(engine: str, files: set[str], card: Any) -> list[str]:
    """The engines this machine can run the bundle with, as services/inference/bundle.py decides:
    ENGINE=auto without TensorFlow takes only a format the export step checked against Keras."""
    import importlib.util

    def have(module: str) -> bool:
        return importlib.util.find_spec(module) is not None

    keras = "model.keras" in files and have("tensorflow")
    can = {"keras": keras, "predict": keras,
           "tflite": have("ai_edge_litert") and ("model.tflite" in files or keras),
           "onnx": "model.onnx" in files and have("onnxruntime")}
    if engine != "auto":
        return [engine] if can.get(engine) else []
    if keras:
        return [name for name, ok_ in can.items() if ok_]

    def checked(fmt: str) -> bool:
        diff = (card.exports.get(fmt) or {}).get("max_abs_diff")
        return diff is not None and diff <= 1e-3  # services/inference/bundle.py AUTO_TOLERANCE

    return [fmt for fmt in ("onnx", "tflite") if can[fmt] and f"model.{fmt}" in files and checked(fmt)]




@check("ports")
def _ports(ctx: Context) -> Result:
    ports: dict[str, int] = dict(ctx.extra.get("fixed_ports") or {})
    busy = [f"{name} {port}" for name, port in ports.items() if not is_free(port)]
    if busy:
        return fail("ports", f"port(s) in use: {', '.join(busy)}",
                    "stop what uses them, or leave out --fixed-ports (free ports are picked)")
    if ctx.settings.reporter.messaging:
        try:
            reporter = ctx.settings.reporter
            with socket.create_connection((reporter.mqtt_host, int(reporter.mqtt_port)), timeout=1.5):
                pass
        except OSError as exc:
            broker = f"{ctx.settings.reporter.mqtt_host}:{ctx.settings.reporter.mqtt_port}"
            return fail("ports", f"no MQTT broker at {broker} ({exc.strerror or exc})",
                        "start mosquitto, set MQTT_HOST/MQTT_PORT, or leave out --messaging")
    return ok("ports", "fixed metrics ports free" if ports else "free loopback ports are picked at start")


# --- secrets and Redis's eviction policy (shared/ops/secret_check.py, shared/data/redis_retention.py) ------

def compose_env_file() -> Path:
    """The compose/.env that `docker compose up` reads on a box deployed from this checkout."""
    from shared.ops.config import REPO_ROOT

    return REPO_ROOT / "compose" / ".env"


def compose_secrets_dir(env_file: Path) -> Path:
    """The folder of secret files compose mounts: SECRETS_DIR of .env, relative to compose/."""
    from shared.ops.secret_check import read_env_file

    named = read_env_file(env_file).get("SECRETS_DIR", "") if env_file.is_file() else ""
    return env_file.parent / (named or "secrets")


@check("secrets")
def _secrets(ctx: Context) -> Result:
    from shared.ops.secret_check import COMPOSE_SECRETS, check_problems, env_file_leftovers
    from shared.ops.secret_files import folder_problems

    # What this run uses fails the check: REDIS_URL's password, a compose secret in the environment.
    environment = process_environment()
    env = {name: environment[name] for name in COMPOSE_SECRETS if name in environment}
    if ctx.settings.aggregator.redis_url:
        env["REDIS_URL"] = str(ctx.settings.aggregator.redis_url)
    problems = check_problems(env)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        return fail("secrets", problems[0] + more, "set your own (`openssl rand -hex 24`)")
    # The compose stack's secret files are not used by a local run: a box set up for compose (a .env
    # or a secrets folder) hears of them as a warning; its `check-secrets` service refuses them anyway.
    env_file = compose_env_file()
    folder = compose_secrets_dir(env_file)
    in_compose = []
    if env_file.is_file() or folder.is_dir():
        in_compose = folder_problems(folder) + (env_file_leftovers(env_file) if env_file.is_file() else [])
    if in_compose:
        more = f" (and {len(in_compose) - 1} more)" if len(in_compose) > 1 else ""
        return ok("secrets", "none in use is empty or an example", warning=in_compose[0] + more)
    return ok("secrets", "none in use is empty or an example")


@check("eviction")
def _eviction(ctx: Context) -> Result | None:
    if ctx.private_redis:
        return None  # the private redis-server has no maxmemory: nothing is evicted
    import redis

    from shared.data.redis_retention import eviction_problem

    try:
        client = redis.Redis.from_url(str(ctx.settings.aggregator.redis_url), socket_timeout=1.5,
                                      socket_connect_timeout=1.5)
        client.ping()
    except (redis.RedisError, ValueError):
        return None  # unreachable, refused or malformed: the redis check says so
    problem = eviction_problem(client)
    if problem:
        return ok("eviction", "Redis may evict keys", warning=problem)
    return ok("eviction", "Redis never evicts a running session")
