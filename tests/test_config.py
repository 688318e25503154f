"""Config: the original defaults, strict merging, --set overrides, and every shipped YAML file."""
import subprocess
import sys
from pathlib import Path

import pytest

from attngan.config import ConfigError, apply_override, get_default_config, load_config, to_yaml
import yaml

REPO = Path(__file__).resolve().parents[1]

# The original's code/miscc/config.py, key by key (plus the fork's GAN.DUAL_ATTN).
ORIGINAL_DEFAULTS = {
    'DATASET_NAME': 'birds', 'CONFIG_NAME': '', 'DATA_DIR': '', 'GPU_ID': 0, 'CUDA': True, 'WORKERS': 6,
    'RNN_TYPE': 'LSTM', 'B_VALIDATION': False,
    'TREE.BRANCH_NUM': 3, 'TREE.BASE_SIZE': 64,
    'TRAIN.BATCH_SIZE': 64, 'TRAIN.MAX_EPOCH': 600, 'TRAIN.SNAPSHOT_INTERVAL': 2000,
    'TRAIN.DISCRIMINATOR_LR': 2e-4, 'TRAIN.GENERATOR_LR': 2e-4, 'TRAIN.ENCODER_LR': 2e-4,
    'TRAIN.RNN_GRAD_CLIP': 0.25, 'TRAIN.FLAG': True, 'TRAIN.NET_E': '', 'TRAIN.NET_G': '',
    'TRAIN.B_NET_D': True, 'TRAIN.SMOOTH.GAMMA1': 5.0, 'TRAIN.SMOOTH.GAMMA2': 5.0,
    'TRAIN.SMOOTH.GAMMA3': 10.0, 'TRAIN.SMOOTH.LAMBDA': 1.0,
    'GAN.DF_DIM': 64, 'GAN.GF_DIM': 128, 'GAN.Z_DIM': 100, 'GAN.CONDITION_DIM': 100, 'GAN.R_NUM': 2,
    'GAN.B_ATTENTION': True, 'GAN.B_DCGAN': False, 'GAN.DUAL_ATTN': False,
    'TEXT.CAPTIONS_PER_IMAGE': 10, 'TEXT.EMBEDDING_DIM': 256, 'TEXT.WORDS_NUM': 18,
}


def _get(cfg, dotted):
    for part in dotted.split('.'):
        cfg = cfg[part]
    return cfg


@pytest.mark.parametrize('key,value', sorted(ORIGINAL_DEFAULTS.items()))
def test_defaults_equal_original(key, value):
    got = _get(get_default_config(), key)
    assert got == value and type(got) is type(value), key


def test_unknown_key_names_key_and_file(tmp_path):
    f = tmp_path / 'typo.yml'
    f.write_text('TRAIN:\n  SMOOTH:\n    GAMA1: 4.0\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert 'TRAIN.SMOOTH.GAMA1' in str(e.value) and str(f) in str(e.value)


def test_type_mismatch_names_expected_and_given(tmp_path):
    f = tmp_path / 'bad.yml'
    f.write_text('TRAIN:\n  BATCH_SIZE: "twenty"\n')
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert 'TRAIN.BATCH_SIZE' in msg and 'expected int' in msg and 'got str' in msg and str(f) in msg


def test_int_accepted_where_float_expected(tmp_path):
    f = tmp_path / 'ok.yml'
    f.write_text('TRAIN:\n  SMOOTH:\n    GAMMA1: 4\n')
    cfg = load_config(f)
    assert cfg.TRAIN.SMOOTH.GAMMA1 == 4.0 and isinstance(cfg.TRAIN.SMOOTH.GAMMA1, float)


def test_bool_is_not_an_int(tmp_path):
    with pytest.raises(ConfigError):
        apply_override(get_default_config(), 'TRAIN.BATCH_SIZE=true')


def test_section_replaced_by_scalar_is_an_error():
    with pytest.raises(ConfigError, match='TRAIN.SMOOTH is a section'):
        apply_override(get_default_config(), 'TRAIN.SMOOTH=3')


def test_set_overrides_after_file():
    cfg = load_config(REPO / 'cfg' / 'bird_attn2.yml', ['TRAIN.BATCH_SIZE=8', 'GAN.B_DCGAN=true',
                                                        'TRAIN.NET_G=models/x.pth'])
    assert cfg.TRAIN.BATCH_SIZE == 8 and cfg.GAN.B_DCGAN is True and cfg.TRAIN.NET_G == 'models/x.pth'
    assert cfg.TRAIN.SMOOTH.LAMBDA == 5.0  # from the file


def test_set_rejects_missing_equals():
    with pytest.raises(ConfigError, match='KEY=VALUE'):
        apply_override(get_default_config(), 'TRAIN.BATCH_SIZE')


ALL_YAML = sorted((REPO / 'cfg').rglob('*.yml'))


@pytest.mark.parametrize('path', ALL_YAML, ids=[str(p.relative_to(REPO / 'cfg')) for p in ALL_YAML])
def test_shipped_yaml_loads(path):
    cfg = load_config(path)
    assert cfg.CONFIG_NAME
    # the resolved config survives a YAML round trip
    again = get_default_config()
    from attngan.config import merge
    merge(again, yaml.safe_load(to_yaml(cfg)), source='round trip')
    assert again == cfg


def test_original_config_set_is_shipped():
    names = {str(p.relative_to(REPO / 'cfg')) for p in ALL_YAML}
    for n in ['bird_attn2.yml', 'bird_attnDCGAN2.yml', 'coco_attn2.yml', 'eval_bird.yml',
              'eval_bird_attnDCGAN2.yml', 'eval_coco.yml', 'DAMSM/bird.yml', 'DAMSM/coco.yml',
              'bird_dualattn.yml', 'eval_bird_dualattn.yml']:
        assert n in names


def test_bird_attn2_values():
    cfg = load_config(REPO / 'cfg' / 'bird_attn2.yml')
    assert (cfg.TRAIN.BATCH_SIZE, cfg.GAN.GF_DIM, cfg.GAN.DF_DIM, cfg.TRAIN.SMOOTH.GAMMA1,
            cfg.TRAIN.SMOOTH.LAMBDA, cfg.DATA_DIR) == (20, 32, 64, 4.0, 5.0, 'data/birds')
    assert cfg.TRAIN.NET_E == 'DAMSMencoders/bird/text_encoder200.pth'


def test_cli_typo_is_one_clear_line(tmp_path):
    f = tmp_path / 'typo.yml'
    f.write_text('GAN:\n  GF_DIMM: 32\n')
    r = subprocess.run([sys.executable, str(REPO / 'main.py'), '--cfg', str(f)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and 'GAN.GF_DIMM' in lines[0] and str(f) in lines[0]


# ---- YAML edge cases: exponent floats (YAML 1.2 style) and duplicate keys ----------------------------

EXPONENT_FLOATS = ['2e-4', '5e-3', '1e3', '-1.5E-2', '+3E+2', '1.5e-3', '.5e1', '7.e-1']


@pytest.mark.parametrize('text', EXPONENT_FLOATS)
def test_exponent_float_in_file(tmp_path, text):
    f = tmp_path / 'lr.yml'
    f.write_text(f'TRAIN:\n  GENERATOR_LR: {text}\n  SMOOTH:\n    GAMMA1: {text}\n')
    cfg = load_config(f)
    for got in (cfg.TRAIN.GENERATOR_LR, cfg.TRAIN.SMOOTH.GAMMA1):
        assert type(got) is float and got == float(text)


@pytest.mark.parametrize('text', EXPONENT_FLOATS)
def test_exponent_float_in_set(text):
    cfg = get_default_config()
    apply_override(cfg, f'TRAIN.DISCRIMINATOR_LR={text}')
    assert type(cfg.TRAIN.DISCRIMINATOR_LR) is float and cfg.TRAIN.DISCRIMINATOR_LR == float(text)


@pytest.mark.parametrize('text', ['e5', 'E-3', '1e', '1e-', '2e-4x', '1.2.3', '1e3e', '0x'])
def test_float_lookalikes_stay_strings(tmp_path, text):
    f = tmp_path / 'name.yml'
    f.write_text(f'CONFIG_NAME: {text}\n')
    assert load_config(f).CONFIG_NAME == text
    cfg = get_default_config()
    apply_override(cfg, f'CONFIG_NAME={text}')
    assert cfg.CONFIG_NAME == text


def test_exponent_float_where_an_int_is_expected():
    assignment = 'TRAIN.BATCH_SIZE=1e3'
    with pytest.raises(ConfigError) as e:
        apply_override(get_default_config(), assignment)
    assert str(e.value) == (f'--set {assignment}: type mismatch for config key TRAIN.BATCH_SIZE: '
                            f'expected int, got float ({float("1e3")!r})')


def test_ints_and_global_yaml_untouched(tmp_path):
    f = tmp_path / 'ints.yml'
    f.write_text('TRAIN:\n  BATCH_SIZE: 1_000\n  MAX_EPOCH: 0x10\n')
    cfg = load_config(f)
    assert (cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.MAX_EPOCH) == (1000, 16)
    # the loader is the config's own: PyYAML's SafeLoader keeps its YAML 1.1 reading
    assert yaml.safe_load('x: 2e-4')['x'] == '2e-4'


def _lines_of(text, key):
    """1-based numbers of the lines of ``text`` that start (after indentation) with ``key:``."""
    return [i for i, line in enumerate(text.split('\n'), 1) if line.strip().startswith(f'{key}:')]


DUPLICATES = {
    'top level': ('CONFIG_NAME', 'CONFIG_NAME',
                  'CONFIG_NAME: a\nDATA_DIR: data/birds\nCONFIG_NAME: b\n'),
    'in a section': ('TRAIN.BATCH_SIZE', 'BATCH_SIZE',
                     'TRAIN:\n  BATCH_SIZE: 8\n  MAX_EPOCH: 3\n  BATCH_SIZE: 16\n'),
    'two levels down': ('TRAIN.SMOOTH.GAMMA1', 'GAMMA1',
                        'TRAIN:\n  SMOOTH:\n    GAMMA1: 4.0\n    GAMMA2: 5.0\n    GAMMA1: 6.0\n'),
    'a whole section': ('TRAIN', 'TRAIN',
                        'TRAIN:\n  BATCH_SIZE: 8\nGAN:\n  GF_DIM: 32\nTRAIN:\n  MAX_EPOCH: 3\n'),
    'a nested section': ('TRAIN.SMOOTH', 'SMOOTH',
                         'TRAIN:\n  SMOOTH:\n    GAMMA1: 4.0\n  SMOOTH:\n    GAMMA2: 5.0\n'),
}


@pytest.mark.parametrize('case', sorted(DUPLICATES))
def test_duplicate_key_names_key_file_and_lines(tmp_path, case):
    dotted, key, text = DUPLICATES[case]
    f = tmp_path / 'dup.yml'
    f.write_text(text)
    first, second = _lines_of(text, key)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value) == (f'{f}: duplicate config key {dotted!r} at lines {first} and {second} '
                            f'(a later value would silently replace the earlier one)')


def test_keys_once_per_section_load(tmp_path):
    f = tmp_path / 'ok.yml'
    f.write_text('TRAIN:\n  BATCH_SIZE: 8\n  SMOOTH:\n    LAMBDA: 2.0\nSAMPLE:\n  SEED: 3\nTEXT:\n  WORDS_NUM: 12\n'
                 'DAMSM:\n  IMAGE_SIZE: 80\nTREE:\n  BASE_SIZE: 32\n')
    cfg = load_config(f)
    assert (cfg.TRAIN.BATCH_SIZE, cfg.TRAIN.SMOOTH.LAMBDA, cfg.SAMPLE.SEED, cfg.TEXT.WORDS_NUM,
            cfg.DAMSM.IMAGE_SIZE, cfg.TREE.BASE_SIZE) == (8, 2.0, 3, 12, 80, 32)


def test_duplicate_key_in_set_value():
    value = '{BATCH_SIZE: 8, MAX_EPOCH: 3, BATCH_SIZE: 16}'
    assignment = f'TRAIN={value}'
    first = value.index('BATCH_SIZE') + 1
    second = value.index('BATCH_SIZE', first) + 1
    with pytest.raises(ConfigError) as e:
        apply_override(get_default_config(), assignment)
    assert str(e.value) == (f"--set {assignment}: duplicate config key 'TRAIN.BATCH_SIZE' at columns "
                            f"{first} and {second} of the value (a later value would silently replace "
                            f"the earlier one)")


def test_cli_duplicate_key_is_one_clear_line(tmp_path):
    f = tmp_path / 'dup.yml'
    text = 'GAN:\n  GF_DIM: 32\n  GF_DIM: 64\n'
    f.write_text(text)
    r = subprocess.run([sys.executable, str(REPO / 'main.py'), '--cfg', str(f)],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    first, second = _lines_of(text, 'GF_DIM')
    assert len(lines) == 1 and "'GAN.GF_DIM'" in lines[0] and str(f) in lines[0]
    assert f'lines {first} and {second}' in lines[0]


def test_invalid_yaml_is_one_line_naming_file_and_line(tmp_path):
    f = tmp_path / 'tab.yml'
    text = 'TRAIN:\n  BATCH_SIZE: 8\n\tMAX_EPOCH: 3\n'
    f.write_text(text)
    line = next(i for i, l in enumerate(text.split('\n'), 1) if '\t' in l)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    msg = str(e.value)
    assert '\n' not in msg and msg.startswith(f'{f}: not valid YAML: ') and f'(at line {line}, column 1)' in msg
    with pytest.raises(ConfigError) as e:
        apply_override(get_default_config(), 'TRAIN.BATCH_SIZE=[1')
    assert '\n' not in str(e.value) and str(e.value).startswith('--set TRAIN.BATCH_SIZE=[1: value is not valid YAML')


@pytest.mark.parametrize('value,ok', [('auto', True), ('AUTO', True), ('true', True), ('False', True),
                                      ('maybe', False), ('"yes please"', False)])
def test_use_bbox_values(tmp_path, value, ok):
    f = tmp_path / 'bbox.yml'
    f.write_text(f'DATA:\n  USE_BBOX: {value}\n')
    if ok:
        load_config(f)
        return
    given = yaml.safe_load(value)
    with pytest.raises(ConfigError) as e:
        load_config(f)
    assert str(e.value) == f"{f}: config key DATA.USE_BBOX must be 'auto', True or False, got {given!r}"


def test_skip_missing_images_key():
    cfg = get_default_config()
    assert cfg.DATA.SKIP_MISSING_IMAGES is False   # the original stops at a missing image
    apply_override(cfg, 'DATA.SKIP_MISSING_IMAGES=true')
    assert cfg.DATA.SKIP_MISSING_IMAGES is True
