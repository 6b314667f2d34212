"""OtherLoad: CPU time other processes take on this process's CPUs while something is timed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from slimkit.measure.load import OtherLoad


def test_other_load_sees_a_busy_process_and_not_our_own_work():
    with OtherLoad() as own:
        end = time.monotonic() + 0.5
        while time.monotonic() < end:  # our own busy loop is not "other" load
            pass
    if own.cores is None:
        pytest.skip("this system does not report per-CPU busy time")
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        with OtherLoad() as other:
            time.sleep(1.0)
    finally:
        spinner.kill()
        spinner.wait()
    # Measured against the same machine a moment before, so that unrelated load cancels out.
    assert other.cores is not None and other.cores - own.cores > 0.4
