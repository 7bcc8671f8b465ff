"""The one backoff and the one log throttle (shared/bus/backoff.py) every service uses."""

from __future__ import annotations

from shared.bus.backoff import Backoff, LogThrottle, backoff_delay


def test_delays_double_up_to_the_cap_and_reset_on_success():
    b = Backoff(0.5, 3.0)
    assert [b.next_delay() for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert b.failures == 5
    b.reset()
    assert b.next_delay() == 0.5
    assert backoff_delay(0.5, 10.0, 3) == 4.0


def test_jitter_only_shortens_a_delay_and_by_at_most_its_fraction():
    b = Backoff(1.0, 60.0, jitter=0.2)
    delays = [b.next_delay() / 2 ** i for i in range(6)]
    assert all(0.8 <= d <= 1.0 for d in delays) and len(set(delays)) > 1


def test_the_throttle_lets_one_line_through_per_interval():
    t = LogThrottle(1.0)
    assert [t.ready(now) for now in (10.0, 10.5, 10.99, 11.0, 11.2, 12.5)] == [True, False, False, True, False, True]
