"""The test suite's own promises: it leaves nothing behind on the machine it runs on."""

import os
import subprocess
import sys

from conftest import REPO


def test_a_test_session_removes_its_prepared_cache(tmp_path):
    """conftest's session cache (prepared data and tokenizer, a few MB) goes with the session."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    result = subprocess.run([sys.executable, "-m", "pytest", "tests/test_redact.py", "-q",
                             "-p", "no:cacheprovider"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "TMPDIR": str(scratch)}, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not list(scratch.glob("autoresearch-test-cache-*"))
