"""Helpers shared by the golden-fixture tests (../shared/golden, made by running the original code).

Tolerances are those suggested by ../shared/golden/README.md.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import torch

ACT_TOL = dict(atol=1e-4, rtol=1e-4)   # activations
SUM_RTOL = 1e-5                         # digest sums, relative to the tensor's abs_sum
LOSS_RTOL = 1e-5                        # scalar losses
GRAD_NORM_RTOL = 5e-3                   # train_step gradient norms
PARAM_SUM_ATOL = 1e-2                   # train_step parameter sums after Adam


def load(golden_dir: Path, name: str) -> dict:
    return torch.load(Path(golden_dir) / name, weights_only=True)


def decode_u8(img_u8: torch.Tensor) -> torch.Tensor:
    """The fixtures' image encoding: x = (u8 - 128) / 128."""
    return (img_u8.float() - 128.0) / 128.0


def is_digest(x: Any) -> bool:
    return isinstance(x, Mapping) and x.get('digest') is True


def assert_close(actual: torch.Tensor, expected: Any, name: str, atol: float = ACT_TOL['atol'],
                 rtol: float = ACT_TOL['rtol'], sum_rtol: float = SUM_RTOL) -> None:
    """Compare a tensor to a stored tensor or to a digest dict (strided slice + float64 sums)."""
    actual = actual.detach().cpu()
    if not is_digest(expected):
        assert tuple(actual.shape) == tuple(expected.shape), \
            f'{name}: shape {tuple(actual.shape)} != {tuple(expected.shape)}'
        torch.testing.assert_close(actual.to(expected.dtype), expected, atol=atol, rtol=rtol,
                                   msg=lambda m: f'{name}: {m}')
        return
    assert list(actual.shape) == list(expected['shape']), \
        f"{name}: shape {list(actual.shape)} != {expected['shape']}"
    k = expected['stride']
    strided = actual[..., ::k, ::k].float()
    torch.testing.assert_close(strided, expected['strided'], atol=atol, rtol=rtol,
                               msg=lambda m: f'{name} (strided by {k}): {m}')
    a64 = actual.double()
    scale = expected['abs_sum']
    tol = sum_rtol * max(scale, 1e-12)
    got = {'sum': a64.sum().item(), 'abs_sum': a64.abs().sum().item()}
    for key, val in got.items():
        assert abs(val - expected[key]) <= tol, \
            f'{name}: {key} {val!r} != {expected[key]!r} (tol {tol:.3g})'
    sq = a64.square().sum().item()
    assert abs(sq - expected['sq_sum']) <= sum_rtol * max(expected['sq_sum'], 1e-12), \
        f"{name}: sq_sum {sq!r} != {expected['sq_sum']!r}"
    nc = a64.flatten(2).sum(2) if a64.dim() > 2 else a64
    torch.testing.assert_close(nc, expected['nc_sum'].double(), atol=tol, rtol=0,
                               msg=lambda m: f'{name} nc_sum: {m}')


def assert_scalar(actual, expected: float, name: str, rtol: float = LOSS_RTOL, atol: float = 0.0) -> None:
    val = float(actual.detach()) if torch.is_tensor(actual) else float(actual)
    assert math.isfinite(val), f'{name}: not finite ({val})'
    assert abs(val - expected) <= atol + rtol * abs(expected), \
        f'{name}: {val!r} != {expected!r} (rtol {rtol}, atol {atol})'


def assert_state_dict_equal(module: torch.nn.Module, expected: Mapping[str, torch.Tensor], name: str,
                            atol: float = 0.0, rtol: float = 0.0) -> None:
    sd = module.state_dict()
    assert list(sd) == list(expected), f'{name}: keys/order differ'
    for k, v in sd.items():
        torch.testing.assert_close(v.cpu(), expected[k], atol=atol, rtol=rtol,
                                   msg=lambda m, k=k: f'{name}.{k}: {m}')


def fill_by_rule(module: torch.nn.Module, base: int) -> None:
    """The README's weight-fill rule, applied in place in the module's own state_dict order."""
    sd = module.state_dict()
    with torch.no_grad():
        for i, (key, t) in enumerate(sd.items()):
            g = torch.Generator().manual_seed(base + i)
            prefix = key[:key.rfind('.') + 1]
            is_bn = prefix + 'running_var' in sd
            if key.endswith('num_batches_tracked'):
                continue
            if key.endswith('running_var'):
                value = 0.5 + torch.rand(t.shape, generator=g)
            elif key.endswith('running_mean'):
                value = 0.1 * torch.randn(t.shape, generator=g)
            elif key == prefix + 'weight' and is_bn:
                value = 1.0 + 0.1 * torch.randn(t.shape, generator=g)
            elif key == prefix + 'bias' and is_bn:
                value = 0.1 * torch.randn(t.shape, generator=g)
            elif t.dim() >= 2:
                fan = t.numel() // t.shape[0]
                value = torch.randn(t.shape, generator=g) * math.sqrt(2.0 / fan)
            else:
                value = 0.05 * torch.randn(t.shape, generator=g)
            t.copy_(value)


def check_fill(module: torch.nn.Module, fixture: Mapping) -> None:
    """The module's keys/shapes equal `state_keys` and its filled tensors match `fill_checksums`."""
    sd = module.state_dict()
    assert [[k, list(v.shape)] for k, v in sd.items()] == [[k, list(s)] for k, s in fixture['state_keys']]
    for k, (s, a) in fixture['fill_checksums'].items():
        t = sd[k].double()
        assert abs(t.sum().item() - s) <= 1e-9 * max(1.0, abs(a)), f'fill of {k}: sum differs'
        assert abs(t.abs().sum().item() - a) <= 1e-9 * max(1.0, abs(a)), f'fill of {k}: abs_sum differs'
