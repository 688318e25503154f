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
