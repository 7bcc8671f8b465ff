"""bench.observe.ProcessSampler: what it reads of each child, and how often (its CPU is taken from the trials)."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil
import pytest

from bench import observe


@pytest.fixture
def child():
    # A real child process named as a benchmark's own (`-m bench.<name>`: the arguments after -c are its argv).
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-m", "bench.idle"])
    yield proc
    proc.kill()
    proc.wait()


def _sampled(pid: int, samples: int) -> list[observe.ProcSeries]:
    """The child's series after `samples` samples: the sampler's thread stopped at once (it may have taken the
    first), the rest taken here."""
    sampler = observe.ProcessSampler(interval=60.0)
    sampler.close()
    for _ in range(samples):  # at most: a child the sampler does not name is never sampled
        if len(next((s.samples for s in sampler.series.values() if s.pid == pid), [])) >= samples:
            break
        sampler.sample()
    return [s for s in sampler.series.values() if s.pid == pid]


def test_the_sampler_looks_for_tensorflow_ever_more_rarely(child, monkeypatch):
    looked = []
    read_maps = observe._loads_tensorflow  # counted, and still read for real (a sleeping Python: no TensorFlow)
    monkeypatch.setattr(observe, "_loads_tensorflow", lambda pid: looked.append(pid) or read_maps(pid))
    (series,) = _sampled(child.pid, 20)
    assert series.name == "idle" and len(series.samples) == 20 and series.peak_rss > 0 and not series.tensorflow
    # At its 1st, 2nd, 4th, 8th and 16th sample: 5 of 20 (every 4th sample read it 5 times in 20, and 80 a
    # minute at 2 samples a second for ever).
    assert looked.count(child.pid) == 5


def test_a_process_that_loads_tensorflow_is_seen_and_not_looked_at_again(child, monkeypatch):
    # Its maps say TensorFlow from the 2nd look on (a child that loads TensorFlow for real takes seconds and
    # hundreds of MB; the first test reads a real process's maps).
    looked = []
    monkeypatch.setattr(observe, "_loads_tensorflow", lambda pid: looked.append(pid) or len(looked) >= 2)
    (series,) = _sampled(child.pid, 10)
    assert series.tensorflow and looked.count(child.pid) == 2  # found at the 2nd look, then never read again


def test_the_proportional_set_size_is_read_ever_more_rarely_and_counts_shared_pages_once(child, monkeypatch):
    read = []
    real = observe._pss  # counted, and read for real
    monkeypatch.setattr(observe, "_pss", lambda pid: read.append(pid) or real(pid))
    (series,) = _sampled(child.pid, 10)
    assert read.count(child.pid) == 4  # at its 1st, 2nd, 4th and 8th sample
    # The child maps the Python library and libc this process maps too: its share of them is less than all of them.
    rss = series.samples[-1][2]
    assert 0 < series.pss < rss
    assert series.pss == pytest.approx(psutil.Process(child.pid).memory_full_info().pss, rel=0.2)
    child.kill()
    child.wait()
    assert observe._pss(child.pid) is None


def test_one_read_of_proc_stat_gives_what_psutil_gives(child):
    proc = psutil.Process(child.pid)
    sum(range(3_000_000))  # this process has used some CPU to compare
    for pid, p in ((child.pid, proc), (os.getpid(), psutil.Process())):
        cpu, rss, threads = observe._proc_stat(pid)
        times = p.cpu_times()
        assert abs(cpu - (times.user + times.system)) < 0.05  # clock ticks: 10 ms, and time goes on between
        assert abs(rss - p.memory_info().rss) < 2**20 and threads == p.num_threads()
    assert os.getpid() != child.pid and observe._proc_stat(os.getpid())[0] > 0


def test_a_process_gone_is_none_and_its_samples_are_kept(child):
    sampler = observe.ProcessSampler(interval=60.0)
    sampler.close()
    sampler.sample()
    sampler.sample()
    assert child.pid in sampler._procs
    child.kill()
    child.wait()
    assert observe._proc_stat(child.pid) is None
    sampler.sample()
    assert child.pid not in sampler._procs and len(sampler.series[child.pid].samples) >= 2
