"""Under CI=true the shared fixtures are part of the test input: a test that needs a missing ../shared folder
fails instead of skipping (elsewhere, users without ../shared get a clean skip)."""
import os
import subprocess
import sys

from conftest import REPO_ROOT


def _run_golden_test(tmp_path, ci: str | None):
    env = {k: v for k, v in os.environ.items() if k != 'CI'}
    env['ATTNGAN_GOLDEN'] = str(tmp_path / 'no-such-golden-folder')
    if ci is not None:
        env['CI'] = ci
    # one golden test file is enough: every golden test takes the folder through the golden_dir fixture
    return subprocess.run([sys.executable, '-m', 'pytest', '-q', '-p', 'no:cacheprovider', '-x',
                           'tests/test_golden_attention.py'], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def test_missing_shared_folder_skips_for_users_and_fails_in_ci(tmp_path):
    user = _run_golden_test(tmp_path, None)
    assert user.returncode == 0, user.stdout[-2000:]
    assert 'skipped' in user.stdout and 'failed' not in user.stdout
    ci = _run_golden_test(tmp_path, 'true')
    assert ci.returncode != 0, ci.stdout[-2000:]
    assert 'CI=true' in ci.stdout and 'no-such-golden-folder' in ci.stdout
