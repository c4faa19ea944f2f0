"""The pure parts of the console's insight (issue 23): reading cgroup files of both versions, the
words for a run's end, the bounded usage ring and the bounded run history.

(tests/test_console_insight.py runs them for real: the OOM killer, the chart, the downloads.)
"""

from __future__ import annotations

from collections import deque

from jhsingle_native_proxy.app_state import Failure, FailureKind
from jhsingle_native_proxy.exit_reason import (
    MemoryCgroup,
    cgroup_directory,
    describe_bytes,
    describe_end,
    parse_cgroup_mounts,
    parse_limit,
    parse_memory_cgroup_path,
    parse_oom_kills,
)
from jhsingle_native_proxy.run_history import RUN_BYTES_KEPT, RUN_LINES_KEPT, RunHistory
from jhsingle_native_proxy.usage_history import CpuMeter, UsageHistory

V1_CGROUP = """9:name=systemd:/
4:memory:/process_api/85cc5e1f
3:cpuset:/
0::/
"""
V2_CGROUP = "0::/user.slice/app.scope\n"
MOUNTINFO = """\
25 30 0:23 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
31 25 0:27 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
32 25 0:28 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
# A container without a cgroup namespace: its own cgroup is bind-mounted as the root.
DOCKER_MOUNTINFO = "40 30 0:27 /docker/abc /sys/fs/cgroup/memory ro - cgroup cgroup rw,memory\n"
V1_OOM_CONTROL = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"
V2_EVENTS = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 0\n"


def test_the_memory_cgroup_is_found_for_both_versions():
    assert parse_memory_cgroup_path(V1_CGROUP) == (1, "/process_api/85cc5e1f")
    assert parse_memory_cgroup_path(V2_CGROUP) == (2, "/user.slice/app.scope")
    assert parse_memory_cgroup_path("") is None
    mounts = parse_cgroup_mounts(MOUNTINFO)
    assert mounts == {1: ("/", "/sys/fs/cgroup/memory"), 2: ("/", "/sys/fs/cgroup/unified")}
    assert cgroup_directory("/process_api/85cc5e1f", "/", "/sys/fs/cgroup/memory") == (
        "/sys/fs/cgroup/memory/process_api/85cc5e1f"
    )
    assert cgroup_directory("/", "/", "/sys/fs/cgroup") == "/sys/fs/cgroup"
    [(root, point)] = parse_cgroup_mounts(DOCKER_MOUNTINFO).values()
    assert cgroup_directory("/docker/abc", root, point) == "/sys/fs/cgroup/memory"
    assert cgroup_directory("/docker/abc/x", root, point) == "/sys/fs/cgroup/memory/x"
    assert cgroup_directory("/other", root, point) is None
    # Outside a cgroup namespace's root: nothing of ours under the mount.
    assert cgroup_directory("/../sibling", "/", "/sys/fs/cgroup") is None


def test_oom_kills_and_limits_of_both_versions():
    assert parse_oom_kills(V1_OOM_CONTROL) == 3
    assert parse_oom_kills(V2_EVENTS) == 2  # not oom_group_kill's count
    assert parse_oom_kills("oom 1\n") is None
    assert parse_limit("max\n") is None  # v2: no limit
    assert parse_limit("9223372036854771712\n") is None  # v1: no limit
    assert parse_limit("2147483648\n") == 2 * 2**30
    assert parse_limit("") is None


def test_a_cgroup_in_files(tmp_path):
    """MemoryCgroup reads our count and the smallest limit up to the mount's root."""
    inner = tmp_path / "outer" / "inner"
    inner.mkdir(parents=True)
    (inner / "memory.events").write_text(V2_EVENTS)
    (inner / "memory.max").write_text("max\n")
    (tmp_path / "outer" / "memory.max").write_text(str(512 * 2**20))
    (tmp_path / "memory.max").write_text(str(2 * 2**30))
    group = MemoryCgroup(2, str(inner), str(tmp_path))
    assert group.oom_kills() == 2 and group.limit() == 512 * 2**20
    v1 = MemoryCgroup(1, str(inner), str(inner))
    (inner / "memory.oom_control").write_text(V1_OOM_CONTROL)
    (inner / "memory.limit_in_bytes").write_text("419430400\n")
    assert v1.oom_kills() == 3 and v1.limit() == 400 * 2**20


def test_the_words_for_a_runs_end():
    assert describe_end(-9, oom_killed=True, limit=2 * 2**30) == (
        "killed by the kernel: out of memory (limit 2 GiB)"
    )
    assert describe_end(137, oom_killed=True) == "killed by the kernel: out of memory"
    assert describe_end(1) == "exited with status 1"
    assert describe_end(0) == "exited with status 0"
    assert describe_end(-9) == "killed by signal 9 (SIGKILL)"
    assert describe_end(-15, "restart asked") == "stopped: restart asked"
    assert describe_end(-15, "idle") == "stopped: idle"
    # An OOM kill during a run we were stopping is still the kernel's.
    assert describe_end(-9, "restart asked", oom_killed=True).startswith("killed by the kernel")
    # The count grew (another process), but the app exited by itself: not an OOM kill of it.
    assert describe_end(1, oom_killed=True) == "exited with status 1"
    assert describe_bytes(400 * 2**20) == "400 MiB" and describe_bytes(1.5 * 2**30) == "1.5 GiB"


class FakeCgroup(MemoryCgroup):
    """A cgroup whose count the test moves (the real one is in test_console_insight)."""

    count = 0

    def oom_kills(self) -> int | None:
        return self.count

    def limit(self) -> int | None:
        return 400 * 2**20


def test_the_run_history_keeps_five_runs_and_their_words():
    group = FakeCgroup(1, "/nowhere", "/nowhere")
    history = RunHistory(group)
    tail: deque[str] = deque(maxlen=50)
    for n in range(1, 8):
        run = history.begin(tail)
        run.append(f"line of run {n}")
        if n == 7:
            group.count = 1
        history.end(run, Failure.exit(-9 if n == 7 else 1))
    assert [r["number"] for r in history.view()] == [7, 6, 5, 4, 3]
    assert history.last_end() == "killed by the kernel: out of memory (limit 400 MiB)"
    assert history.find(6).end == "exited with status 1"
    assert history.find(3).text() == "line of run 3\n" and history.find(2) is None
    assert list(tail)[-1] == "line of run 7"  # the supervisor's tail got every line too
    never = history.begin(tail)
    history.end(never, Failure(FailureKind.NOT_STARTED, "command not found: x"))
    assert never.end == "could not be started: command not found: x"


def test_a_runs_output_is_bounded_in_lines_and_bytes():
    history = RunHistory(read_cgroup=False)
    run = history.begin(deque(maxlen=50))
    for n in range(RUN_LINES_KEPT + 10):
        run.append(f"{n}")
    assert len(run.lines) == RUN_LINES_KEPT and run.dropped == 10
    assert run.text().startswith("[... 10 earlier lines not kept]\n10\n")
    big = history.begin(deque(maxlen=50))
    for _ in range(100):
        big.append("x" * 8192)
    assert big.kept_bytes <= RUN_BYTES_KEPT and len(big.lines) == RUN_BYTES_KEPT // 8193


def test_the_usage_ring_never_grows_past_its_size():
    usage = UsageHistory(size=4)
    for n in range(10):
        usage.requests += 30
        usage.take_sample(None, now=100.0 + 15 * n)
        assert len(usage.samples) <= 4
    assert len(usage.samples) == 4 and usage.samples.maxlen == 4
    assert [s.requests_per_minute for s in usage.samples] == [120.0] * 4
    assert len(usage.view()["samples"]) == 4
    from jhsingle_native_proxy.usage_history import SAMPLES_KEPT

    assert UsageHistory().samples.maxlen == SAMPLES_KEPT == 240


def test_cpu_percent_of_one_core():
    meter = CpuMeter(1.0)
    assert meter.percent(10, 5.0, 100.0) == 0.0  # nothing to compare with yet
    assert meter.percent(10, 6.0, 102.0) == 50.0
    assert meter.percent(10, 9.0, 102.5) == 50.0  # too soon: the last figure
    assert meter.percent(10, 8.0, 104.0) == 100.0
    assert meter.percent(11, 1.0, 106.0) == 50.0  # a new instance: all its time is new
    assert meter.percent(None, 0.0, 108.0) == 0.0
