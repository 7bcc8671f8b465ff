"""The benchmark's summary, its check against the issue's targets, and the markdown tables."""

from __future__ import annotations

from typing import Any

SERVICES = ("capture", "facedetect", "sequencer", "inference", "aggregator", "reporter", "redis")
RSS_LIMIT_MB = 200.0
GROWTH_LIMIT_PERCENT = 5.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def summarise(r: dict) -> dict:
    """Throughput of each way of running the same work, and the pipeline/loop ratios (of the parts run)."""
    out: dict[str, Any] = {}
    pipeline, loops = r.get("pipeline", {}), r.get("loops", {})
    for n in (1, 8):
        pipe = _get(pipeline, f"bundle_{n}_unthrottled", "fps")
        ref, best = _get(loops, f"reference_{n}", "fps"), _get(loops, f"best_{n}", "fps")
        if pipe is None and ref is None:
            continue
        out[f"faces_{n}"] = {"pipeline_fps": pipe, "reference_loop_fps": ref, "best_loop_fps": best,
                             "pipeline_over_reference": _ratio(pipe, ref), "pipeline_over_best": _ratio(pipe, best)}
    if "engines" in r:
        chosen = next(row for row in r["engines"]["rows"] if row["engine"] == r["engines"]["auto_choice"])
        out["cost_per_face"] = {
            "engine": chosen["engine"], "model_ms_per_face_1": chosen["ms_per_face_1"],
            "model_ms_per_face_8": chosen["ms_per_face_8"],
            "pipeline_ms_per_face_1": _get(pipeline, "bundle_1_unthrottled", "model_ms_per_face"),
            "pipeline_ms_per_face_8": _get(pipeline, "bundle_8_unthrottled", "model_ms_per_face")}
    return out


def _check(name: str, ok: bool | None, detail: str) -> dict:
    return {"target": name, "met": ok, "detail": detail}


def targets(r: dict) -> list[dict]:
    """The checks whose parts ran (a run with --only checks what it measured)."""
    s = r["summary"]
    checks = []
    one, eight = s.get("faces_1"), s.get("faces_8")
    if one and eight and "loops" in r:
        checks.append(_check("1 face: pipeline >= 1.5x reference loop",
                             _ge(one["pipeline_over_reference"], 1.5), f"ratio {one['pipeline_over_reference']}"))
        checks.append(_check("1 face: pipeline >= best single-process loop",
                             _ge(one["pipeline_over_best"], 1.0), f"ratio {one['pipeline_over_best']}"))
        checks.append(_check("8 faces: pipeline > both loops",
                             _gt(eight["pipeline_over_reference"], 1.0) and _gt(eight["pipeline_over_best"], 1.0),
                             f"ratios {eight['pipeline_over_reference']} / {eight['pipeline_over_best']}"))
    paced = [(label, p["latency_ms"]["capture_to_prediction"]["p99"]) for label, p in r.get("pipeline", {}).items()
             if p["realtime"]]
    if paced:
        worst = max(paced, key=lambda t: t[1] or 0)
        checks.append(_check("2 FPS: capture->prediction p99 < 100 ms", worst[1] is not None and worst[1] < 100,
                             f"worst {worst[1]} ms ({worst[0]})"))
    if "bus" in r:
        hop = r["bus"]["hop_ms"]["p99"]
        floor = r["bus"]["header_only"]["hop_ms"]["p99"]
        checks.append(_check("bus hop p99 < 1 ms (raw 640x480)", hop is not None and hop < 1.0,
                             f"p99 {hop} ms (header-only message: p99 {floor} ms)"))
    if "cost_per_face" in s:
        checks += _cost_checks(s["cost_per_face"])
    if r.get("pipeline"):
        checks += _process_checks(r["pipeline"])
    if "soak" in r:
        mem = r["soak"]["memory"]
        worst_growth = max(((n, m["growth_percent"]) for n, m in mem.items() if m["growth_percent"] is not None),
                           key=lambda t: t[1], default=("-", None))
        checks.append(_check(f"soak: no process grows > {GROWTH_LIMIT_PERCENT:.0f}%",
                             worst_growth[1] is not None and worst_growth[1] <= GROWTH_LIMIT_PERCENT,
                             f"worst {worst_growth[0]} {worst_growth[1]}% over {r['soak']['seconds']:.0f} s, "
                             f"{r['soak']['drops_counted']:.0f} drops counted"))
    if "engines" in r:
        e = r["engines"]
        checks.append(_check("auto = fastest engine within 1e-3 of keras", e["auto_is_fastest"],
                             f"auto {e['auto_choice']}, fastest {e['fastest_within_tolerance']}"))
    return checks


def _cost_checks(c: dict) -> list[dict]:
    return [_check("8 faces: cost per face <= half of 1 face (model)",
                   _le(c["model_ms_per_face_8"], 0.5 * (c["model_ms_per_face_1"] or 0)),
                   f"{c['model_ms_per_face_1']} -> {c['model_ms_per_face_8']} ms/face ({c['engine']})"),
            _check("8 faces: cost per face <= half of 1 face (in the pipeline)",
                   _le(c["pipeline_ms_per_face_8"], 0.5 * (c["pipeline_ms_per_face_1"] or 0)),
                   f"{c['pipeline_ms_per_face_1']} -> {c['pipeline_ms_per_face_8']} ms/face")]


def _process_checks(pipeline: dict) -> list[dict]:
    tf_elsewhere = sorted({name.split("#")[0] for p in pipeline.values() for name, proc in p["processes"].items()
                           if proc.get("tensorflow") and not name.startswith("inference")})
    big = max(((name, proc["peak_rss_mb"]) for p in pipeline.values() for name, proc in p["processes"].items()
               if not name.startswith("inference")), key=lambda t: t[1])
    return [_check("only inference loads TensorFlow", not tf_elsewhere,
                   "also in " + ", ".join(tf_elsewhere) if tf_elsewhere else "inference only"),
            _check(f"other services < {RSS_LIMIT_MB:.0f} MB resident", big[1] < RSS_LIMIT_MB,
                   f"largest {big[0]} {big[1]} MB (peak)")]


def _get(r: dict | None, *path: str) -> Any:
    for key in path:
        if not isinstance(r, dict) or key not in r:
            return None
        r = r[key]
    return r


def issue_targets(r: dict, last: dict | None) -> list[dict]:
    """The performance issue's targets: this run's figure beside the last results' ('was')."""
    out = []

    def add(name: str, now: Any, was: Any, met: bool | None, detail: str = "") -> None:
        out.append({"target": name, "now": now, "was": was, "met": met, "detail": detail})

    for n, want in ((1, 1.5), (8, 2.0)):
        now = _get(r, "summary", f"faces_{n}", "pipeline_over_best")
        add(f"{n} face(s): pipeline >= {want:g}x the best single-process loop", now,
            _get(last, "summary", f"faces_{n}", "pipeline_over_best"), _ge(now, want),
            f"{_get(r, 'summary', f'faces_{n}', 'pipeline_fps')} vs {_get(r, 'summary', f'faces_{n}', 'best_loop_fps')}"
            " frames/s")
    p99 = _get(r, "pipeline", "bundle_8_2fps", "latency_ms", "capture_to_prediction", "p99")
    add("2 FPS, bundle, 8 faces: capture->prediction p99 < 100 ms", p99,
        _get(last, "pipeline", "bundle_8_2fps", "latency_ms", "capture_to_prediction", "p99"),
        None if p99 is None else p99 < 100, "ms")
    pipe = _get(r, "pipeline", "baseline_1_unthrottled", "fps")
    loop = _get(r, "loops", "baseline_1", "fps")
    add("baseline, 1 face, unthrottled: pipeline >= 1.0x bare loop (decode + detection + face mesh)",
        _ratio(pipe, loop), f"pipeline {_get(last, 'pipeline', 'baseline_1_unthrottled', 'fps')} frames/s, no loop",
        _ge(_ratio(pipe, loop), 1.0), f"{pipe} vs {loop} frames/s")
    g = r.get("pipeline_gallery")
    gfps = _get(g, "fps")
    add("1280x720, 30 faces (gallery), baseline >= 2 FPS", gfps, None, _ge(gfps, 2.0),
        f"{_get(g, 'faces_per_frame')} faces a frame found; unthrottled frames/s" if g else "not run")
    rows = {row["detector"]: row for row in _get(r, "detectors", "rows") or [] if row.get("available")}
    default, res10 = rows.get("blazeface"), rows.get("dnn")
    if default and res10:
        worse = [k for k, v in default["recall"].items() if v is not None and v < (res10["recall"][k] or 0)]
        add("default detector's recall >= res10's on the same frames",
            default["recall"], res10["recall"], not worse,
            f"{default['ms_per_frame']['astronaut']} vs {res10['ms_per_frame']['astronaut']} ms a 640x480 frame"
            + (f"; lower on {', '.join(worse)}" if worse else ""))
    else:
        add("default detector's recall >= res10's on the same frames", None, None, None,
            "res10 unavailable here" if "detectors" in r else "not run")
    return out


def _ge(a: float | None, b: float) -> bool | None:
    return None if a is None else a >= b


def _gt(a: float | None, b: float) -> bool | None:
    return None if a is None else a > b


def _le(a: float | None, b: float) -> bool | None:
    return None if a is None else a <= b


def _f(v: Any, digits: int = 1) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    lines += ["| " + " | ".join(_f(c) if not isinstance(c, str) else c for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(r: dict) -> str:
    m = r["machine"]
    parts = [f"## engagement bench ({r['started']})" + (f": {', '.join(r['parts'])}" if "parts" in r else ""),
             f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; load average at start "
             f"{m['load_average_at_start']}, at end {m.get('load_average_at_end')} (shared machine). "
             f"Inputs: {r['inputs']['frames']} frames 640x480 at {r['inputs']['video_fps']:g} FPS of media; "
             f"bundle {r['inputs']['bundle']}."]

    if "loops" in r and any(k in r["summary"] for k in ("faces_1", "faces_8")):
        parts.append(_throughput(r))
    if r.get("pipeline"):
        parts += _pipeline_tables(r["pipeline"])
    if "loops" in r:
        parts.append(_loops_table(r["loops"]))
    if "bus" in r:
        parts.append(_bus(r["bus"]))
    if "engines" in r:
        parts.append(_engines_table(r["engines"]))

    if "soak" in r:
        sk = r["soak"]
        rows = [[n, v["rss_first_frame_mb"], v["rss_start_mb"], v["rss_end_mb"], v["growth_percent"], v["peak_rss_mb"]]
                for n, v in sk["memory"].items()]
        parts.append(f"### Soak: {sk['seconds']:.0f} s, source paced at {sk['source_fps']:g} FPS (8 faces), "
                     f"inference SLOWDOWN {sk['slowdown']} s/batch: {sk['frames_through']} frames through, "
                     f"{sk['frames_captured']} captured, {int(sk['drops_counted'])} drops counted "
                     f"({', '.join(f'{k}: {v:.0f}' for k, v in sk['drops_by_service'].items())}); growth from "
                     f"the end of a {sk['warmup_seconds']:g} s warm-up (bounded queues filling) to the end\n"
                     + _table(["process", "RSS at first frame MB", "RSS after warm-up MB", "RSS end MB", "growth %",
                               "peak MB"], rows))

    if "detectors" in r:
        from bench.detectors import table

        d = r["detectors"]
        parts.append(f"### Face detectors on real faces ({d['frames']} frames per set, recall = faces found / "
                     f"faces there; false positives on {d['negatives']} non-faces)\n" + table(d))

    if r.get("budget_sweep"):
        parts.append(budget_table(r["budget_sweep"]))

    rows = [[c["target"], {True: "met", False: "**missed**", None: "n/a"}[c["met"]], c["detail"]]
            for c in r["targets"]]
    parts.append("### Targets\n" + _table(["target", "result", "figures"], rows))
    if r.get("issue_targets"):
        rows = [[c["target"], _fmt(c["now"]), _fmt(c["was"]), {True: "met", False: "**missed**", None: "n/a"}[c["met"]],
                 c["detail"]] for c in r["issue_targets"]]
        parts.append("### Targets of the performance issue (now, and the last results)\n"
                     + _table(["target", "now", "was", "result", "figures"], rows))
    return "\n\n".join(parts)


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_f(x, 3)}" for k, x in v.items())
    return _f(v, 2)


def _throughput(r: dict) -> str:
    rows = []
    for n in (1, 8):
        s = r["summary"].get(f"faces_{n}")
        if not s:
            continue
        ref, best = r["loops"].get(f"reference_{n}", {}), r["loops"].get(f"best_{n}", {})
        rows.append([f"{n}", s["pipeline_fps"], s["reference_loop_fps"], s["best_loop_fps"],
                     s["pipeline_over_reference"], s["pipeline_over_best"],
                     f"{_f(_get(ref, 'process', 'cpu_percent'))}% / {_f(_get(ref, 'process', 'peak_rss_mb'))}",
                     f"{_f(_get(best, 'process', 'cpu_percent'))}% / {_f(_get(best, 'process', 'peak_rss_mb'))}"])
    return "### Throughput (frames/s, unthrottled, same video and model)\n" + _table(
        ["faces", "pipeline", "reference loop (predict/face)", "best loop (direct, batched)", "pipeline/reference",
         "pipeline/best", "ref loop CPU / peak MB", "best loop CPU / peak MB"], rows)


def _pipeline_tables(pipeline: dict) -> list[str]:
    stages = ("capture", "facedetect", "sequencer", "inference", "aggregator", "capture_to_prediction")
    rows = []
    for label, p in pipeline.items():
        lat = p["latency_ms"]
        rows.append([label, p["fps"], p["frames_through"], p["frames_dropped"], int(p["drops_counted"]),
                     *[f"{_f(lat[s]['p50'])} / {_f(lat[s]['p99'])}" for s in stages], p["model_ms_per_face"]])
    latency = "### Pipeline runs: latency from header stamps (ms, p50 / p99), drops\n" + _table(
        ["run", "frames/s", "frames", "lost", "drops counted", *stages, "model ms/face"], rows)
    rows = []
    for label, p in pipeline.items():
        procs = p["processes"]
        rows.append([label, *[f"{_f(procs[s]['cpu_percent'])} / {_f(procs[s]['peak_rss_mb'])}" if s in procs else "-"
                              for s in SERVICES]])
    cpu = "### Pipeline runs: CPU (% of one core) / peak resident MB per process\n" + _table(["run", *SERVICES], rows)
    return [latency, cpu]


def _loops_table(loops: dict) -> str:
    rows = []
    for label, lp in loops.items():
        st = lp["stages_ms"]
        rows.append([label, lp["engine"], lp["fps"], *[f"{_f(st[k]['p50'])} / {_f(st[k]['p99'])}"
                                                       for k in ("read", "detect", "crop", "classify", "overlay")],
                     lp["classify_ms_per_face"]["p50"]])
    return "### Single-process loops: per-stage time (ms, p50 / p99)\n" + _table(
        ["loop", "engine", "frames/s", "read", "detect", "crop", "classify", "overlay", "classify ms/face"], rows)


def _bus(b: dict) -> str:
    return (f"### Bus hop (raw 640x480 BGR, {b['transport']})\n"
            f"p50 {b['hop_ms']['p50']} ms, p99 {b['hop_ms']['p99']} ms, mean {b['hop_ms']['mean']} ms "
            f"({b['received']}/{b['sent']} frames); the same hop with no payload (header only): "
            f"p50 {b['header_only']['hop_ms']['p50']} ms, p99 {b['header_only']['hop_ms']['p99']} ms"
            + (f"; over ipc (the launcher's links): p50 {b['ipc']['hop_ms']['p50']} ms, "
               f"p99 {b['ipc']['hop_ms']['p99']} ms" if "ipc" in b else ""))


def _engines_table(e: dict) -> str:
    rows = [[f"{row['engine']} ({row.get('device', 'cpu')})", row["ms_per_call_1"], row["ms_per_call_8"],
             row["ms_per_face_1"], row["ms_per_face_8"], f"{row['max_abs_diff_vs_keras']:.1e}"] for row in e["rows"]]
    bl = e["baseline"]
    rows.append([f"baseline ({bl['engine']})", bl["ms_per_call_1"], bl["ms_per_call_8"], bl["ms_per_face_1"],
                 bl["ms_per_face_8"], "-"])
    return ("### Inference engines (same real crops; ms, median)\n" + _table(
        ["engine", "1 face ms/call", "8 faces ms/call", "ms/face (1)", "ms/face (8)", "max diff vs keras"], rows)
        + f"\nauto picks **{e['auto_choice']}**; fastest within {e['tolerance']:g} of keras: "
          f"{e['fastest_within_tolerance']}")


def budget_table(sweep: list[dict]) -> str:
    """The sweep: each budget's runs, best frames/s first within a run."""
    rows = []
    for b in sorted(sweep, key=lambda b: (b["run"], -(b["fps"] or 0))):
        lat = b["latency_ms"]["capture_to_prediction"]
        procs = b["processes"]
        cpu = f"{_f(_get(procs, 'facedetect', 'cpu_percent'))} / {_f(_get(procs, 'inference', 'cpu_percent'))}"
        rows.append([f"{b.get('number', '')}. {b['budget']}", b["run"], b["fps"],
                     f"{_f(lat['p50'])} / {_f(lat['p99'])}", b["model_ms_per_face"], cpu,
                     _f((b.get("load_average") or [None])[0], 2)])
    return "### CPU budget sweep\n" + _table(
        ["budget", "run", "frames/s", "capture->prediction ms p50 / p99", "model ms/face",
         "facedetect / inference CPU %", "load (1 min) after"], rows)
