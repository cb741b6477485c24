"""Runs the crash torture harness (tests/torture/torture.py) in its short mode.

30 cycles (about a minute) against the release broker that scripts/test.sh builds; set
TORTURE_CYCLES for more, TORTURE_SEED to replay a seed (the seed is in the output).
The long mode: `.venv/bin/python tests/torture/torture.py --cycles 300`.
See docs/durability.md for what the harness does and checks.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Below pytest's --timeout=600 (scripts/test.sh), so that a hang reports this run's output.
TIMEOUT_S = 540


def test_crash_torture_short_mode():
    cycles = os.environ.get("TORTURE_CYCLES", "30")
    # Its own process group: on a timeout the harness and the broker it started go together.
    harness = subprocess.Popen(
        [sys.executable, str(HERE / "torture.py"), "--cycles", cycles],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = harness.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(harness.pid, signal.SIGKILL)
        stdout, stderr = harness.communicate()
        raise AssertionError(f"torture did not finish in {TIMEOUT_S} s:\n{stdout}\n{stderr[-4000:]}")
    print(stdout)
    print(stderr, file=sys.stderr)
    assert harness.returncode == 0, f"torture failed:\n{stdout}\n{stderr[-4000:]}"
    assert (
        "lost=0 duplicated=0 out_of_order=0 bad_crc=0 offset_gaps=0 failed=0 fatal=0 recovery_log=0"
        in stdout
    )
