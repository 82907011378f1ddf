"""The benchmarks' own plumbing that a figure depends on: where the service runs."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from benchmarks.harness import BenchmarkError, place_on_own_cores

# A parent with a child and a thread of its own, as `serve --workers` and its threads are.
TREE = """
import subprocess, sys, threading, time
threading.Thread(target=time.sleep, args=(60,), daemon=True).start()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
print(child.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def service_tree() -> Iterator[tuple[int, int]]:
    parent = subprocess.Popen([sys.executable, "-c", TREE], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    try:
        yield parent.pid, child
    finally:
        subprocess.run(["pkill", "-P", str(parent.pid)], check=False)
        parent.kill()
        parent.wait()


def threads_cpus(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(task))) for task in os.listdir(f"/proc/{pid}/task")}


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to split")
def test_the_service_gets_the_last_cores_to_itself_and_everything_is_given_back(
    service_tree: tuple[int, int],
) -> None:
    parent, child = service_tree
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    everything = frozenset(os.sched_getaffinity(0))
    try:
        placement = place_on_own_cores(parent, 1, [other.pid])
        last = frozenset({max(everything)})
        assert threads_cpus(parent) == {last}
        assert threads_cpus(child) == {last}
        assert threads_cpus(other.pid) == {everything - last}
        assert placement.refused == []
        placement.restore()
        assert threads_cpus(parent) == threads_cpus(child) == threads_cpus(other.pid) == {everything}
    finally:
        other.kill()
        other.wait()


def test_the_service_cannot_take_every_core(service_tree: tuple[int, int]) -> None:
    with pytest.raises(BenchmarkError, match="must leave a CPU"):
        place_on_own_cores(service_tree[0], len(os.sched_getaffinity(0)), [])
