import pytest

from shared.ops.config import SERVICES, SettingError, env_names, example_yaml, load_settings, settings_for


def test_env_then_flag_precedence():
    env = {"FPS": "5", "REALTIME": "yes", "FRAMES_OUT": "push+bind:tcp://127.0.0.1:1"}
    s = load_settings("capture", [], env=env)
    assert s.fps == 5.0 and s.realtime == 1 and s.frames_out.endswith(":1")
    s = load_settings("capture", ["--fps", "3"], env=env)
    assert s.fps == 3.0


def test_every_service_has_its_links_and_common_settings():
    for service, attrs in {"facedetect": ("frames_in", "faces_out"), "reporter": ("preview_in", "updates_in"),
                           "inference": ("batches_in", "predictions_out")}.items():
        s = load_settings(service, [], env={})
        for attr in (*attrs, "session_id", "hwm", "eu_ai_act_mode", "metrics_port"):
            assert hasattr(s, attr), (service, attr)


def test_env_names_cover_links_and_metrics_port():
    names = env_names()
    assert {"FRAMES_OUT", "UPDATES_IN", "REDIS_URL", "METRICS_PORT", "EU_AI_ACT_MODE"} <= names


# --- one settings model: precedence, the config file, one-line errors ------------------------

def test_flag_beats_environment_beats_file_beats_default(tmp_path):
    cfg = tmp_path / "engagement.yaml"
    cfg.write_text("fps: 4\nwidth: 320\nDETECTOR: haar\n")
    env = {"FPS": "3", "CONFIG_FILE": str(cfg)}
    s = load_settings("capture", ["--fps", "1"], env=env)
    assert (s.fps, s.width, s.height) == (1.0, 320, 1080)  # flag, file, default (a bound since issue 21)
    assert load_settings("capture", [], env=env).fps == 3.0  # environment over the file
    assert load_settings("capture", ["--config", str(cfg)], env={}).fps == 4.0
    assert load_settings("facedetect", ["--config", str(cfg)], env={}).detector == "haar"


def test_the_example_file_lists_every_setting_and_loads_back_to_the_defaults(tmp_path):
    text = example_yaml()
    cfg = tmp_path / "example.yaml"
    cfg.write_text(text)
    for service in SERVICES:
        loaded = load_settings(service, ["--config", str(cfg)], env={})
        for s in settings_for(service):
            assert f"\n{s.dest}: " in text, s.env
            assert getattr(loaded, s.dest) == s.default, (service, s.env)


BAD = [
    # (argv, env, file text, the one line)
    (["--fps", "two"], {}, None, "setting FPS='two' (flag --fps) is not a number; allowed: a number from 0 to 240"),
    ([], {"HWM": "0"}, None, "setting HWM='0' (environment) is too small; allowed: a whole number of at least 1"),
    ([], {"REALTIME": "2"}, None, "setting REALTIME='2' (environment) is not a switch value; allowed: 0 or 1"),
    ([], {"FRAME_ENCODING": "png"}, None, "is not a choice; allowed: one of auto, bgr, jpeg"),
    ([], {}, "fps: [1, 2]\n", "setting FPS=[1, 2] (config file {cfg}) is not a single value"),
    ([], {}, "fps: nan\n", "is not a finite number"),
    ([], {}, "fsp: 1\n", "config file {cfg}: unknown setting 'fsp' (did you mean fps?)"),
    ([], {}, "fps: [1\n", "config file {cfg} is not valid YAML at line 2"),
    ([], {}, "- fps\n", "config file {cfg} must be a mapping of setting: value"),
    # A link's connection string: checked with the rest, not a traceback from the socket it would make.
    (["--frames-out", "tcp://127.0.0.1:5551"], {}, None,
     "setting FRAMES_OUT='tcp://127.0.0.1:5551' (flag --frames-out) is not <type>+<bind|connect>:<endpoint>"),
    ([], {"PREVIEW_OUT": "pub+listen:tcp://127.0.0.1:5552"}, None, "(environment) is not <type>+<bind|connect>"),
    ([], {}, "frames_out: push+bind:127.0.0.1:5551\n", "has an endpoint without a scheme"),
]
# Redis URLs, for every service that takes one (redis-py's own error was a traceback).
BAD_REDIS = [(service, url) for service in ("facedetect", "inference", "aggregator", "reporter", "web")
             for url in ("localhost:6379", "http://127.0.0.1:6379")]


@pytest.mark.parametrize("argv,env,text,line", BAD, ids=[b[3][:40] for b in BAD])
def test_a_bad_value_is_one_line_naming_setting_origin_and_what_is_allowed(tmp_path, argv, env, text, line):
    cfg = tmp_path / "bad.yaml"
    if text is not None:
        cfg.write_text(text)
        argv = [*argv, "--config", str(cfg)]
    with pytest.raises(SettingError) as err:
        load_settings("capture", argv, env=env)
    assert "\n" not in str(err.value) and line.format(cfg=cfg) in str(err.value)


@pytest.mark.parametrize("service,url", BAD_REDIS)
def test_a_redis_url_of_no_redis_scheme_is_one_line(service, url):
    with pytest.raises(SettingError) as err:
        load_settings(service, [], env={"REDIS_URL": url})
    assert str(err.value).startswith(f"setting REDIS_URL={url!r} (environment) is not a Redis URL; allowed: a URL "
                                     "starting redis://, rediss://, unix://")
    for good in ("redis://127.0.0.1:6379/0", "rediss://user:pw@host:6380/1", "unix:///run/redis.sock"):
        assert load_settings(service, [], env={"REDIS_URL": good}).redis_url == good


def test_a_bad_redis_url_from_a_secret_file_is_refused_without_its_password(tmp_path):
    secret = tmp_path / "redis_url"
    secret.write_text("redis:/:s3cret-pw@redis:6379/0\n")  # one slash short
    with pytest.raises(SettingError) as err:
        load_settings("aggregator", [], env={"REDIS_URL_FILE": str(secret)})
    assert "s3cret-pw" not in str(err.value) and "is not a Redis URL" in str(err.value)


def test_a_links_connection_string_is_taken_in_every_form_the_launcher_and_compose_write():
    for spec in ("push+bind:tcp://127.0.0.1:5551", "push+connect:tcp://a:5551,tcp://b:5551", "pub+bind:ipc:///tmp/x"):
        assert load_settings("capture", ["--frames-out", spec], env={}).frames_out == spec
    assert load_settings("capture", [], env={"PREVIEW_OUT": ""}).preview_out == ""  # empty: the link is off


def test_switches_take_words_and_stand_alone():
    assert load_settings("reporter", ["--record"], env={}).record == 1
    assert load_settings("reporter", [], env={"RECORD": "yes"}).record == 1
    assert load_settings("reporter", [], env={"HEADLESS": ""}).headless == -1  # compose's empty = default


# --- the typed settings objects (shared/ops/settings.py) against the table ---------------------

def _typed_fields(cls: type) -> dict[str, tuple[type, tuple[str, ...] | None]]:
    """Each field of a settings Struct: (its type, its Literal's choices or None)."""
    import typing

    import msgspec

    out = {}
    for f in msgspec.structs.fields(cls):
        # A setting's annotation carries its facts (shared/ops/settings.py: `about`): its type is the first part.
        kind = typing.get_args(f.type)[0] if typing.get_origin(f.type) is typing.Annotated else f.type
        if typing.get_origin(kind) is typing.Literal:
            out[f.name] = (str, typing.get_args(kind))
        else:
            out[f.name] = (kind, None)
    return out


def _table_fields(settings) -> dict[str, tuple[type, tuple[str, ...] | None]]:
    return {s.dest: (s.type, s.choices) for s in settings}


@pytest.mark.parametrize("service", [*SERVICES])
def test_each_service_struct_is_its_table_field_by_field(service):
    from shared.ops.settings import BY_SERVICE

    table = {**_table_fields(settings_for(service)), "metrics_port": (int, None)}
    assert _typed_fields(BY_SERVICE[service]) == table
    s = load_settings(service, [], env={})
    assert type(s) is BY_SERVICE[service] and s.service == service


def test_the_launcher_struct_is_every_run_setting_field_by_field():
    from services.launcher.launch_settings import PLANNED, LaunchSettings, run_settings
    from shared.ops.settings import RunSettings
    from tests.support.run_settings import run_settings_with

    # RunSettings nests the services' Structs and the launcher's: every field of its parts but the
    # ones planned per process (links, metrics port), each name of one type in every part.
    fields: dict[str, set] = {}
    for part in RunSettings.__struct_fields__:
        for name, typed in _typed_fields(type(getattr(run_settings_with(), part))).items():
            if name not in PLANNED:
                fields.setdefault(name, set()).add(typed)
    assert all(len(types) == 1 for types in fields.values()), fields
    assert {name: types.pop() for name, types in fields.items()} == _table_fields(run_settings())
    # Beside them the launcher keeps the class's streams and whether the session id was given.
    assert set(_typed_fields(LaunchSettings)) - set(_typed_fields(RunSettings)) == {"sources", "session_given"}


def test_a_run_makes_its_session_id_once_and_says_whether_it_was_given():
    import argparse

    from services.launcher.launch_settings import resolve_run

    made = resolve_run(argparse.Namespace(source=["cam1@3=0"]), env={})
    assert not made.session_given and made.common.session_id.startswith("cam1-")
    assert made.capture.session_id == made.common.session_id  # the same id in every part
    assert (made.capture.source, made.capture.stream_id, made.sources[0].fps) == ("0", "cam1", 3.0)
    given = resolve_run(argparse.Namespace(), env={"SESSION_ID": "monday-maths"})
    assert given.session_given and given.common.session_id == "monday-maths"


def test_typed_values_have_their_static_types():
    s = load_settings("capture", ["--fps", "3", "--width", "640"], env={"FRAME_ENCODING": "jpeg"})
    assert (s.fps, s.width, s.frame_encoding) == (3.0, 640, "jpeg")
    assert type(s.fps) is float and type(s.width) is int
    with pytest.raises(AttributeError):
        s.no_such_setting  # noqa: B018 - no __getattr__ fallback any more


# --- the environment is read in shared/ops/config.py, with these exceptions only ------------------

# Each file outside config.py that reads the process environment (os.environ, os.getenv, or config's
# process_environment()), how many times, and why. A new read fails here: read a setting instead
# (load_settings, setting_from_environment, from_launcher), or add it with its reason.
ENVIRONMENT_READS = {
    # a child process's environment is built from the launcher's own
    "services/launcher/launch_settings.py": (1, "resolve_run's environment"),
    "services/launcher/plan.py": (1, "every child's inherited environment"),
    "services/launcher/recovery.py": (1, "the recovering reporter's environment"),
    # not settings: compose's secrets, checked where they would be used
    "services/launcher/checks.py": (1, "the secrets check reads compose's secrets, which are no settings"),
    "shared/ops/secret_check.py": (1, "`engagement check-secrets`: compose's secrets, which are no settings"),
    # libraries that demand the environment
    "shared/ops/cpu_budget.py": (1, "sets OMP_NUM_THREADS & co. before the libraries load: they read only those"),
    "services/reporter/service.py": (1, "DISPLAY: OpenCV's windows need an X display"),
    "training/train.py": (2, "TF_CONFIG: TensorFlow's multi-worker strategy is configured by it alone"),
    "training/models.py": (1, "KERAS_HOME: Keras's own cache of downloaded weights"),
    "training/tracking.py": (1, "MLFLOW_TRACKING_URI: MLflow's own variable"),
    "training/chain.py": (4, "KUBERNETES_SERVICE_*: the in-cluster API; BUNDLES_DIR, RUN_NAME: the Job's own"),
    # programs with variables of their own, which are no edge settings
    "services/mqtt_bridge/s3_consumer.py": (1, "the cloud-side consumer's own: S3_BUCKET, S3_PREFIX, S3_LOCAL_DIR"),
    "training/cli.py": (2, "the training data folders (DAISEE_ROOT & co.); the crop settings resolved as "
                           "the services do"),
}


def _environment_reads() -> dict[str, int]:
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    found: dict[str, int] = {}
    for folder in ("shared", "services", "training", "engagement"):
        for path in sorted((root / folder).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel == "shared/ops/config.py":
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            n = sum(1 for node in ast.walk(tree)
                    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id == "os" and node.attr in ("environ", "getenv", "environb"))
            n += sum(1 for node in ast.walk(tree) if isinstance(node, ast.Call)
                     and getattr(node.func, "id", getattr(node.func, "attr", "")) == "process_environment")
            if n:
                found[rel] = n
    return found


def test_the_environment_is_read_only_by_the_config_module_and_the_listed_exceptions():
    assert _environment_reads() == {path: n for path, (n, _why) in ENVIRONMENT_READS.items()}
