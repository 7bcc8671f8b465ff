"""What the benchmark watches while the pipeline runs: the updates link, processes, metrics.

UpdatesTap sits on the real updates link (aggregator -> reporter: PULL, record, PUSH on), so
the stages' own stamps in every message header give per-stage and end-to-end latency with
no extra hop inside the measured path (the tap is after the last stamp that counts).
ProcessSampler samples CPU time and resident memory of the launcher's children from /proc.
MetricsScraper reads the services' Prometheus endpoints (drops, model-call time, faces).
"""

from __future__ import annotations

import os
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

import psutil
from prometheus_client.parser import text_string_to_metric_families

from bench.taps import LinkTap
from shared.bus.messages import Eos, Message, Update
from shared.ops.config import GATHER_SECONDS


@dataclass
class FrameRecord:
    seq: int
    t_capture: float
    stamps: dict[str, float]
    arrived: float
    faces: int
    predictions: int


class UpdatesTap(LinkTap):
    """Records every update's stamps on the aggregator -> reporter link; `on_eos` runs before
    the end-of-stream is passed on (so counters are scraped before the services stop). The
    aggregator passes one eos a session, after its last stream's."""

    def __init__(self, on_eos: Callable[[], object] | None = None) -> None:
        self.records: list[FrameRecord] = []
        # (stream, seq) seen: a second update of one frame is counted here, never as a frame through.
        self.seen: set[tuple[str, int]] = set()
        self.repeated = 0
        self.eos_seq: int | None = None
        self.eos_at: float | None = None
        self.on_eos = on_eos
        super().__init__("updates", "aggregator", "reporter", GATHER_SECONDS.get("reporter", 0.0))

    def on_message(self, msg: Message, arrived: float) -> None:
        h = msg.header
        if isinstance(h, Update):
            key = (h.stream, h.seq)
            if key in self.seen:
                self.repeated += 1
                return
            self.seen.add(key)
            self.records.append(FrameRecord(h.seq, h.t_capture, dict(h.stamps), arrived,
                                            len(h.faces), len(h.predictions)))
        elif isinstance(h, Eos):
            self.eos_seq, self.eos_at = h.seq, arrived
            if self.on_eos:
                self.on_eos()


@dataclass
class ProcSeries:
    name: str
    pid: int
    samples: list[tuple[float, float, int]] = field(default_factory=list)  # (time, cpu seconds, rss bytes)
    peak_rss: int = 0  # VmHWM: the kernel's own peak, catches spikes between samples
    tensorflow: bool = False  # TensorFlow's library is mapped into the process
    cpus: list[int] = field(default_factory=list)  # its CPU affinity (what its budget pinned it to)
    threads: int = 0  # most threads seen (thread pools of every library)
    # Proportional set size, the last read: its private pages and its share of the pages it shares with
    # other processes (libraries, a fork's untouched heap). 99 captures map the same OpenCV and numpy,
    # which RSS counts 99 times; PSS sums to what the box spends on them.
    pss: int = 0


def _service_name(proc: psutil.Process) -> str | None:
    try:
        cmd = proc.cmdline()
    except psutil.Error:
        return None
    if "engagement.cli" in cmd and cmd.index("engagement.cli") + 1 < len(cmd):
        return cmd[cmd.index("engagement.cli") + 1]
    if cmd and "redis-server" in cmd[0]:
        return "redis"
    if "-m" in cmd and cmd.index("-m") + 1 < len(cmd) and cmd[cmd.index("-m") + 1].startswith("bench."):
        return cmd[cmd.index("-m") + 1].rsplit(".", 1)[1]  # the benchmark's own loop/engine processes
    return None


def _loads_tensorflow(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/maps") as f:
            return any("_pywrap_tensorflow" in line or "libtensorflow" in line for line in f)
    except OSError:
        return False


def _vm_hwm(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _proc_stat(pid: int) -> tuple[float, int, int] | None:
    """(CPU seconds, resident bytes, threads) from one read of /proc/<pid>/stat; None once it has exited.
    psutil read three files and a system call a process for these (and VmHWM a fourth): at 80 webcams,
    twice a second each, the sampler's CPU was a third of the benchmark's own."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            text = f.read()
    except OSError:
        return None
    fields = text[text.rindex(b")") + 2:].split()  # after the command's name, which may hold spaces
    # man proc(5): utime 14, stime 15, num_threads 20, rss 24 (1-based, the state being field 3)
    return (int(fields[11]) + int(fields[12])) / _TICKS, int(fields[21]) * _PAGE, int(fields[17])


def _pss(pid: int) -> int | None:
    """Proportional set size in bytes (/proc/<pid>/smaps_rollup), None once it has exited or if unreadable."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


class ProcessSampler:
    """Samples every child process of this one (the launcher's services, its redis-server).

    Whether a process has loaded TensorFlow is looked up at its 1st, 2nd, 4th, 8th... sample, not every 4th:
    a Python service's /proc maps run to thousands of lines, and at 80 webcams reading them every 2 s was
    most of this sampler's CPU (a quarter of the capacity bench's own, which the services' trials pay).
    A library loads at a service's start; one loaded later is seen by the time the samples have doubled."""

    LOOK_EVERY = 2

    def __init__(self, interval: float = 0.5, root_pid: int | None = None, tensorflow: bool = True) -> None:
        self.interval = interval
        self.look_for_tensorflow = tensorflow  # off where no figure uses it: the maps are the sampler's dearest read
        self.root = psutil.Process(root_pid)
        self.series: dict[int, ProcSeries] = {}
        self._procs: set[int] = set()  # the pids still sampled (their series are in `series`)
        self._rounds = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="proc-sampler", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            self.stop.wait(self.interval)

    def sample(self) -> None:
        self._rounds += 1
        # New processes (a class's start, a restarted service) looked for every LOOK_EVERY samples: psutil
        # reads every process's stat on the box to find the children.
        children = self.root.children(recursive=True) if (self._rounds - 1) % self.LOOK_EVERY == 0 else []
        for child in children:
            if child.pid not in self._procs:
                name = _service_name(child)
                if name is None:
                    continue
                self._procs.add(child.pid)
                self.series[child.pid] = ProcSeries(name, child.pid)
        now = time.time()
        for pid in list(self._procs):
            taken = _proc_stat(pid)
            if taken is None:  # it has exited
                self._procs.discard(pid)
                continue
            cpu, rss, threads = taken
            s = self.series[pid]
            s.samples.append((now, cpu, rss))
            s.peak_rss = max(s.peak_rss, _vm_hwm(pid), rss)
            s.threads = max(s.threads, threads)
            try:  # set by the service once it has started (its CPU budget): the last one seen counts
                s.cpus = sorted(os.sched_getaffinity(pid))
            except OSError:
                pass
            if _is_power_of_two(len(s.samples)):
                if self.look_for_tensorflow and not s.tensorflow:
                    s.tensorflow = _loads_tensorflow(pid)
                # Walking the page tables costs more than /proc/<pid>/stat: at the 1st, 2nd, 4th... sample,
                # the last (a service that has loaded its libraries and filled its queues) kept.
                s.pss = _pss(pid) or s.pss

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)

    def summary(self, start: float, end: float) -> dict[str, dict]:
        """Per process: CPU (% of one core) over [start, end], peak and last resident memory, the last
        proportional set size read."""
        out: dict[str, dict] = {}
        for s in self.series.values():
            window = [x for x in s.samples if start <= x[0] <= end]
            if len(window) < 2:  # ended before the window (capture of a short file): its whole life
                window = s.samples
            if not window:
                continue
            wall = window[-1][0] - window[0][0]
            cpu = (window[-1][1] - window[0][1]) / wall * 100 if wall > 0 else None
            name = s.name if s.name not in out else f"{s.name}#{s.pid}"  # a restarted service
            out[name] = {"pid": s.pid, "cpu_percent": round(cpu, 1) if cpu is not None else None,
                         "peak_rss_mb": round(s.peak_rss / 2**20, 1),
                         "rss_mb": round(window[-1][2] / 2**20, 1), "pss_mb": round(s.pss / 2**20, 1),
                         "tensorflow": s.tensorflow,
                         "cpus": s.cpus, "threads": s.threads}
        return out

    def growth(self, start: float, end: float, warmup: float = 0.0) -> dict[str, dict]:
        """Resident memory after `warmup` seconds of [start, end] and at its end (medians of 3 samples).

        The warm-up lets bounded buffers fill (the reporter's match window, socket queues), so
        the growth measured after it is what a leak would add, not a queue reaching its bound.
        """
        out: dict[str, dict] = {}
        for s in self.series.values():
            window = [x for x in s.samples if start <= x[0] <= end]
            steady = [x for x in window if x[0] >= start + warmup]
            if len(steady) < 2:
                continue
            first = sorted(x[2] for x in steady[:3])[len(steady[:3]) // 2]
            last = sorted(x[2] for x in steady[-3:])[len(steady[-3:]) // 2]
            out[s.name] = {"rss_first_frame_mb": round(window[0][2] / 2**20, 1),
                           "rss_start_mb": round(first / 2**20, 1), "rss_end_mb": round(last / 2**20, 1),
                           "growth_percent": round((last - first) / first * 100, 2) if first else None,
                           "peak_rss_mb": round(s.peak_rss / 2**20, 1)}
        return out


class MetricsScraper:
    """Last values of the counters and histograms the benchmark reads, per service.

    `scrape()` reads every service at once (at a class's end); `scrape_next()` reads one, in turn, so a
    benchmark that watches all along spreads its reads over the interval as Prometheus spreads its targets:
    80 pages read in one burst every 5 s woke every service together, a latency spike the trials paid."""

    WANTED = ("engagement_frames_dropped", "engagement_inference_seconds", "engagement_inference_faces",
              "engagement_messages_rejected", "engagement_processing_seconds", "engagement_inference_batch_size",
              "engagement_inference_streams_per_call")
    KEPT = ("_total", "_sum", "_count")  # buckets and _created timestamps are not needed

    def __init__(self) -> None:
        self.ports: dict[str, int] = {}
        self.values: dict[str, dict[str, float]] = {}
        self.lock = threading.Lock()
        self._turn = 0

    def remember_ports(self, envs: dict[str, dict[str, str]]) -> None:
        self.ports = {name: int(env["METRICS_PORT"]) for name, env in envs.items()}

    def scrape(self) -> None:
        for name, port in list(self.ports.items()):
            self._scrape(name, port)

    def scrape_next(self) -> None:
        """Read the next service in turn (none known yet: nothing)."""
        ports = list(self.ports.items())
        if ports:
            self._turn = (self._turn + 1) % len(ports)
            self._scrape(*ports[self._turn])

    def _scrape(self, name: str, port: int) -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1.0) as r:
                text = r.read().decode()
        except OSError:
            return
        values = self.parse(text)
        with self.lock:
            self.values[name] = values

    @classmethod
    def parse(cls, text: str) -> dict[str, float]:
        """{sample name[,reason=...]: value} of the wanted families' totals, sums and counts.

        Only their sample lines reach the parser (a service's page is mostly buckets, help and
        other families: parsing all of it was most of the benchmark's own CPU at 80 webcams)."""
        lines = [line for line in text.splitlines()
                 if line.startswith(cls.WANTED) and line.partition("{")[0].partition(" ")[0].endswith(cls.KEPT)]
        values: dict[str, float] = {}
        for family in text_string_to_metric_families("\n".join(lines) + "\n"):
            for sample in family.samples:
                key = sample.name + "".join(f",{k}={v}" for k, v in sorted(sample.labels.items())
                                            if k in ("reason",))
                values[key] = values.get(key, 0.0) + sample.value
        return values

    def total(self, prefix: str) -> float:
        with self.lock:
            return sum(v for vals in self.values.values() for k, v in vals.items() if k.startswith(prefix))

    def breakdown(self, prefix: str) -> dict[str, float]:
        """{"service reason": value} of a labelled counter, e.g. drops by where and why."""
        with self.lock:
            return {f"{service} {k.partition(',reason=')[2] or '-'}": v for service, vals in self.values.items()
                    for k, v in vals.items() if k.startswith(prefix) and v}

    def get(self, service: str, key: str) -> float | None:
        with self.lock:
            return self.values.get(service, {}).get(key)
