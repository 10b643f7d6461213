"""tests/stress.py, the kill and concurrency stress of the token path, with a few trials so that
CI runs every scenario (README's Reliability figures come from `python3 tests/stress.py --trials 100`)."""

import subprocess
import sys
from pathlib import Path

STRESS = Path(__file__).resolve().parent / "stress.py"


def test_stress_scenarios_pass_with_a_few_trials(home):
    proc = subprocess.run([sys.executable, str(STRESS), "--trials", "3", "--concurrency", "32"],
                          capture_output=True, text=True, timeout=600, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if "trials:" in line]
    assert [line.split()[0] for line in lines] == ["setup", "renewal", "uninstall", "lock", "concurrent"]
    assert all("failures: 0" in line for line in lines), proc.stdout
