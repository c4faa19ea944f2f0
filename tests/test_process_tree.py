"""process_tree.tree_usage against real processes: a tree with a child in a session of its own
(as a kernel manager starts kernels), memory that grows, CPU that is spent."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import textwrap

from conftest import wait_for
from jhsingle_native_proxy.process_tree import NOTHING, tree_usage

# A parent that starts a child in a new session (not in the parent's process group), then both
# wait; the child allocates 64 MiB and burns some CPU first, then says so on stdout.
PARENT = textwrap.dedent(
    """
    import subprocess, sys, time
    child = subprocess.Popen([sys.executable, "-c", '''
    import sys, time
    block = bytearray(64 * 2**20)
    for i in range(0, len(block), 4096):
        block[i] = 1
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    print("ready", flush=True)
    time.sleep(60)
    '''], start_new_session=True, stdout=sys.stdout)
    time.sleep(60)
    """
)


def test_tree_counts_a_child_in_its_own_session_and_its_memory_and_cpu():
    parent = subprocess.Popen(
        [sys.executable, "-c", PARENT], stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        alone = wait_for(lambda: tree_usage(parent.pid).processes >= 1 and tree_usage(parent.pid))
        assert parent.stdout.readline().strip() == b"ready"
        usage = tree_usage(parent.pid)
        assert usage.processes == 2
        assert usage.rss_bytes >= alone.rss_bytes + 60 * 2**20
        assert usage.cpu_seconds >= 0.3
    finally:
        children = subprocess.run(
            ["pgrep", "-P", str(parent.pid)], capture_output=True, text=True
        ).stdout.split()
        for pid in [parent.pid, *map(int, children)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        parent.wait()


def test_nothing_for_no_process_or_a_gone_one():
    assert tree_usage(None) == NOTHING
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert tree_usage(gone.pid).processes == 0
