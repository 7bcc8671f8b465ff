import pytest

from shared.config import SERVICES, SettingError, env_names, example_yaml, load_settings, settings_for


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
    assert (s.fps, s.width, s.height) == (1.0, 320, 480)  # flag, file, default
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
    ([], {"FRAME_ENCODING": "png"}, None, "is not a choice; allowed: one of bgr, jpeg"),
    ([], {}, "fps: [1, 2]\n", "setting FPS=[1, 2] (config file {cfg}) is not a single value"),
    ([], {}, "fps: nan\n", "is not a finite number"),
    ([], {}, "fsp: 1\n", "config file {cfg}: unknown setting 'fsp' (did you mean fps?)"),
    ([], {}, "fps: [1\n", "config file {cfg} is not valid YAML at line 2"),
    ([], {}, "- fps\n", "config file {cfg} must be a mapping of setting: value"),
]


@pytest.mark.parametrize("argv,env,text,line", BAD, ids=[b[3][:40] for b in BAD])
def test_a_bad_value_is_one_line_naming_setting_origin_and_what_is_allowed(tmp_path, argv, env, text, line):
    cfg = tmp_path / "bad.yaml"
    if text is not None:
        cfg.write_text(text)
        argv = [*argv, "--config", str(cfg)]
    with pytest.raises(SettingError) as err:
        load_settings("capture", argv, env=env)
    assert "\n" not in str(err.value) and line.format(cfg=cfg) in str(err.value)


def test_switches_take_words_and_stand_alone():
    assert load_settings("reporter", ["--record"], env={}).record == 1
    assert load_settings("reporter", [], env={"RECORD": "yes"}).record == 1
    assert load_settings("reporter", [], env={"HEADLESS": ""}).headless == -1  # compose's empty = default
