"""A short, bounded run of the coverage-guided fuzzer (bench/fuzz_mail.py, atheris).

Seeded with the hostile corpus; libFuzzer stops at the first input that raises, breaks a
cap or takes over half a second of CPU, and exits non-zero.  Long runs: see bench/fuzz_mail.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parent.parent.parent
CORPUS = ROOT / "tests" / "corpus" / "mail"


def test_a_few_thousand_fuzzed_inputs_break_no_reader(tmp_path: Path) -> None:
    seeds = tmp_path / "seeds"
    shutil.copytree(CORPUS, seeds)  # libFuzzer adds what it finds to its corpus directory
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "fuzz_mail.py"),
            str(seeds),
            "-runs=4000",
            "-max_len=65536",
            "-timeout=5",
            "-seed=11",
            f"-artifact_prefix={tmp_path}/",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Done 4000 runs" in result.stderr
    assert not list(tmp_path.glob("crash-*")) and not list(tmp_path.glob("timeout-*"))
