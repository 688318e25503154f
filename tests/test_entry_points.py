"""The installed console scripts and the design card's script paths, run as a user would: from another folder."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from conftest import REPO_ROOT

SCRIPTS = tomllib.loads((REPO_ROOT / 'pyproject.toml').read_text())['project']['scripts']
WRAPPERS = ['main.py', 'pretrain_DAMSM.py', 'prepare_data.py', 'data/make_toy.py'] + \
    sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / 'eval').glob('*.py'))


def _run(args, cwd):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize('script', sorted(SCRIPTS))
def test_console_script_runs_from_another_folder(script, tmp_path):
    exe = Path(sys.executable).parent / script
    assert exe.is_file(), f'{exe} missing: the package is installed with `pip install -e .` (make setup)'
    r = _run([str(exe), '--help'], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('usage:'), r.stderr[-2000:]


@pytest.mark.parametrize('wrapper', WRAPPERS)
def test_design_card_script_paths_run(wrapper, tmp_path):
    r = _run([sys.executable, str(REPO_ROOT / wrapper), '--help'], tmp_path)
    assert r.returncode == 0 and r.stdout.startswith('usage:'), r.stderr[-2000:]


def test_config_paths_resolve_against_the_project_from_anywhere(tiny_toy, tmp_path):
    """`--cfg cfg/...` and the config's relative paths find the project's files from another folder."""
    exe = Path(sys.executable).parent / 'attngan-prepare-data'
    r = _run([str(exe), 'check-data', '--cfg', 'cfg/toy_attn2.yml', '--data_dir', str(tiny_toy)], tmp_path)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = _run([str(exe), 'check-data', '--cfg', 'cfg/no_such_config.yml'], tmp_path)
    assert r.returncode != 0 and 'no_such_config.yml' in r.stderr and 'Traceback' not in r.stderr
