"""The heap trimmer's rules (jhsingle_native_proxy.heap), on a scripted RSS and clock.

The real thing is measured in test_reliability.py (aborted uploads); here, when it trims and
when it holds back, without waiting on a process.
"""

from __future__ import annotations

from jhsingle_native_proxy.heap import HeapTrimmer, malloc_trim, resident_bytes

MIB = 2**20


class Scripted:
    """An RSS that the test sets, a trim that drops it to `after_trim`, and a clock."""

    def __init__(self, rss: int):
        self.rss = rss
        self.after_trim: int | None = None
        self.trims = 0
        self.now = 0.0

    def resident(self) -> int:
        return self.rss

    def trim(self) -> None:
        self.trims += 1
        if self.after_trim is not None:
            self.rss = self.after_trim

    def trimmer(self, growth: int = 16 * MIB, max_wait: float = 64.0) -> HeapTrimmer:
        return HeapTrimmer(
            self.trim, self.resident, growth=growth, max_wait=max_wait, clock=lambda: self.now
        )


def test_no_trim_while_the_rss_stays_near_its_low():
    s = Scripted(40 * MIB)
    trimmer = s.trimmer()
    for rss in (41, 50, 55, 30, 45):  # 45 < 30 + 16: the low follows the RSS down
        s.rss = rss * MIB
        assert not trimmer.check()
    assert s.trims == 0


def test_a_burst_is_trimmed_and_the_next_burst_too():
    s = Scripted(40 * MIB)
    trimmer = s.trimmer()
    s.rss, s.after_trim = 120 * MIB, 50 * MIB
    assert trimmer.check() and s.trims == 1
    assert not trimmer.check()  # 50 < 40 + 16
    s.rss = 110 * MIB  # the next burst, at once (the trim gave back much: no waiting)
    assert trimmer.check() and s.trims == 2


def test_memory_in_use_is_trimmed_less_and_less_often():
    s = Scripted(40 * MIB)
    trimmer = s.trimmer(max_wait=8.0)
    s.rss, s.after_trim = 100 * MIB, 98 * MIB  # in use: a trim gives back little
    assert trimmer.check()
    assert not trimmer.check()  # too soon, and no new growth
    times = []
    for second in range(1, 40):
        s.now = float(second)
        if trimmer.check():
            times.append(second)
    # Waits of 4, 8, then 8 s (the cap), counted from each trim.
    assert times == [4, 12, 20, 28, 36], times
    s.rss, s.after_trim = 98 * MIB + 16 * MIB, None  # grown by `growth` again: a new burst
    assert trimmer.check()


def test_back_near_its_low_the_waiting_starts_over():
    s = Scripted(40 * MIB)
    trimmer = s.trimmer(max_wait=64.0)
    s.rss, s.after_trim = 100 * MIB, 99 * MIB
    trimmer.check()
    s.now = 10.0
    trimmer.check()  # the wait is 8 s now
    s.rss = 41 * MIB  # the memory was freed and given back on its own
    assert not trimmer.check()
    s.rss, s.after_trim = 100 * MIB, 99 * MIB
    s.now = 11.0
    assert trimmer.check()  # a fresh burst: trimmed at once
    s.now = 14.5
    assert not trimmer.check()  # the first wait again (4 s), not 16 s
    s.now = 15.0
    assert trimmer.check()


def test_without_malloc_trim_or_proc_it_does_nothing():
    assert not HeapTrimmer(None).enabled
    assert not HeapTrimmer(lambda: 0, resident=lambda: None).enabled
    assert HeapTrimmer(None).check() is False


def test_this_platform_has_both():
    """CI runs on glibc Linux: the trimmer must be on there, or the reliability bound is luck."""
    assert malloc_trim() is not None
    rss = resident_bytes()
    assert rss is not None and rss > MIB
    trimmer = HeapTrimmer(malloc_trim())
    assert trimmer.enabled
