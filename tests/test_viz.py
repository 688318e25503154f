"""Pictures and sample files convert [-1, 1] to uint8 by one rule, the original's."""
import numpy as np
import torch
from PIL import Image

from attngan.sampling import save_uint8
from attngan.viz import to_uint8


def test_one_uint8_rule_for_pictures_and_samples(tmp_path):
    x = torch.tensor([-1.0, -0.5, 0.0, 0.999, 1.0, 1.5, -3.0])
    img = x.view(1, 1, 1, -1).expand(1, 3, 2, -1)
    # the original: (x + 1) * 127.5 truncated by astype(np.uint8); out-of-range values clamped first
    expected = np.clip((x.numpy().astype(np.float64) + 1) * 127.5, 0, 255).astype(np.uint8)
    u8 = to_uint8(img)
    assert u8.shape == (1, 2, x.numel(), 3) and u8.dtype == np.uint8
    assert (u8[0, 0, :, 0] == expected).all()
    save_uint8(img[0], tmp_path / 's.png')
    assert (np.asarray(Image.open(tmp_path / 's.png')) == u8[0]).all()
