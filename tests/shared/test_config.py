from shared.config import env_names, load_settings


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
