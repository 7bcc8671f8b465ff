"""services/launcher/checks.py: folder checks leave nothing behind, even run at once; a new check is one function."""

import threading
import time

from services.launcher import checks
from tests.support.run_settings import run_settings_with


def test_folder_checks_at_once_leave_nothing_behind(tmp_path):
    target = tmp_path / "a" / "reports"
    results: list[str | None] = []
    threads = [threading.Thread(target=lambda: results.append(checks.try_writable(target))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [None] * 8 and list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    assert "is a file" in checks.try_writable(tmp_path / "file" / "reports")


def test_folder_checks_hammered_together_never_fail_on_each_others_clean_up(tmp_path):
    """A CI run's two classes started together in one folder: one check removed the reports folder it
    had made while the other was about to write in it ('No such file or directory'). Without the
    second look this loop fails a few times in 9000 checks; with it, never."""
    target = tmp_path / "reports"
    failures: list[str] = []

    def hammer() -> None:
        for _ in range(3000):
            why = checks.try_writable(target)
            if why:
                failures.append(why)

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and not target.exists()


def test_a_new_check_is_a_function_and_a_slow_one_is_cut_at_the_budget():
    def secrets(ctx: checks.Context) -> checks.Result:
        return checks.fail("secrets", "REDIS_PASSWORD is the example's", "set your own")

    def slow(ctx: checks.Context) -> checks.Result:
        time.sleep(5)
        return checks.ok("slow", "never seen")

    started = time.monotonic()
    results = checks.run_checks(checks.Context(run_settings_with()), budget=0.5,
                                checks=[("secrets", secrets), ("slow", slow), ("n/a", lambda ctx: None)])
    assert time.monotonic() - started < 4.0  # cut at the 0.5 s budget, not the check's 5 s (slack for a loaded box)
    assert [(r.name, r.ok) for r in results] == [("secrets", False), ("slow", False)]
    assert results[0].line() == "secrets: REDIS_PASSWORD is the example's; fix: set your own"
    assert "no answer within 0.5 s" in results[1].detail
    table = checks.table(results).splitlines()
    assert table[0].split() == ["check", "result", "detail"] and " FAIL " in table[1]


def test_gallery_names_check_says_whether_the_ocr_library_is_there(monkeypatch):
    import importlib.util

    def run(**values):
        fn = dict(checks.CHECKS)["gallery names"]
        return fn(checks.Context(run_settings_with(**{"gallery": "auto", "gallery_names": "ocr", **values})))

    assert run(gallery_names="off") is None
    assert run(class_level_only=1).ok and "not read" in run(class_level_only=1).detail
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "rapidocr_onnxruntime" else real(name, *a))
    missing = run()
    assert not missing.ok and "rapidocr-onnxruntime is not installed" in missing.detail
    assert "GALLERY_NAMES=off" in missing.fix
