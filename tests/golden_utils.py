"""Helpers shared by the golden-fixture tests (../shared/golden, made by running the original code).

The tolerance rule
==================

Every float comparison with a fixture is made at the float32 noise of the computation itself,
measured on the machine that runs the test (its CPU, its kernels, its thread count):

1. The port computes the value in float32 (``actual``), as in normal use, and a second time in
   float64 (``exact``): the same code on a float64 copy of the same weights (:func:`module64`), on the
   same inputs (:func:`to64`; the stored float32 values are exact in float64), with the same random
   draws (:func:`float64_replay` hands the float32 run's draws, e.g. the fixture's ``ca_eps``, to
   CA_NET's ``torch.randn`` and to ``Tensor.normal_``, and makes the port's few float32 casts for its
   bf16 fast path, ``.float()``, no-ops on float64 tensors). ``actual - exact`` is the float32 rounding
   noise of this computation (float64 rounding is 2**-29 times smaller), including its amplification
   by train-mode BatchNorm, long reductions and saturating ops.

2. Elementwise comparisons (stored tensors, the strided slices of digests, scalars), tensor-level::

       noise = max_i |actual_i - exact_i|         scale = max_i |exact_i|
       pass iff  max_i |actual_i - expected_i|  <=  K * noise + FLOOR * scale

   (non-finite entries, the -inf of masked logits, must be identical and are left out.)
   Sums of many float32 values (digest ``sum``/``abs_sum``/``sq_sum``/``nc_sum``, gradient sums and
   norms, parameter sums in train_step) use the same formula, with the noise of the sum taken as its
   rigorous bound instead of the single, possibly cancelled, difference of the two sums, and the floor
   taken per element (FLOOR * |exact_i|, summed)::

       sum, abs_sum:  noise = sum_i |a_i - e_i|              scale = sum_i |e_i|
       sq_sum:        noise = sum_i |a_i - e_i| |a_i + e_i|  scale = sum_i e_i**2
       nc_sum:        the sum rule per (sample, channel)
       L2 norm:       noise = ||a - e||_2                    scale = ||e||_2

   (|sum a - sum e| <= sum |a - e|;  | ||a|| - ||e|| | <= ||a - e||.)

3. ``K = NOISE_MULTIPLE = 8``. The fixture was computed in float32 on another CPU with other kernels
   (vector width, blocking, oneDNN/MKL paths, 2 threads), so its own noise is of the same order as ours
   but not the same number:  |ours - fixture| <= |ours - exact| + |fixture - exact| = noise + (the
   fixture's noise). Measured over ~1700 comparisons in six settings (default, AVX2-only kernels,
   ATEN_CPU_CAPABILITY=default, 1 thread, and a second fixture set made with MKL limited to SSE4.2,
   default and AVX2), the distance to the fixture reached 3.7 x our noise for a large tensor (train-mode
   fake_imgs[0] under scalar kernels, where our noise is half the AVX2 one): K = 8 allows twice that.

4. ``FLOOR = NOISE_FLOOR = 2**-19`` (1.9e-6, 16 float32 ulps of the magnitude). It covers
   comparisons whose measured noise is zero or a single small sample: scalars (losses, one-element
   gradients) and tiny tensors, whose one rounding error can be far below the fixture's (measured:
   a loss at 117 x our noise, a one-element bias gradient at 5.5 x), and values this machine computes
   in one rounding that the fixture's CPU rounded differently. The largest such excess measured was
   8.4e-7 of the magnitude (7 ulps), so the floor leaves a factor 2. The worst comparison of all six
   settings uses 0.47 of its tolerance. 16 ulps is far below a real defect: a wrong constant, a skipped
   layer, a swapped axis or operand order changes values by 1e-3 relative or far more, and
   tests/test_golden_mutations.py checks that each such defect fails (by 1e4 to 1e6 x the tolerance;
   a 1 % error in the EMA decay, seen only in late parameter sums, by 1.7 to 7.8 x; the previous fixed
   tolerances, 1e-2 on parameter sums, let it pass).

5. Sanity: ``noise <= NOISE_CAP * scale`` (``NOISE_CAP = 2**-10``) for forward values, or the test
   fails: a larger float32-vs-float64 difference means the float64 replay did not reproduce the float32
   run (another random draw, a dtype-dependent code path), and a noise estimate made from it would
   loosen the tolerance instead of measuring rounding. (Gradients after train_step's backward through
   the frozen Inception, where max-pool and ReLU decisions on near-ties differ, are exempt.)

6. train_step: Adam's first step is lr * g / (|g| + eps), about +-lr, so an element whose gradient lies
   within K x (that tensor's gradient noise) of zero may step the other way in the fixture's run (seen
   in the second set: one element, 2 lr). The tolerance of a parameter sum after the step adds the
   largest change of sum_i step(g_i) that gradient errors of that size allow (0.001 of it for the EMA).

Discrete things stay exact: keys, shapes, fill checksums, masks, the CA eps draw, rerun identity,
RNG consumption, log strings (they print 2 decimals of values that the rule compares).

Random draws
============

torch's CPU normal_/uniform_ kernels return other numbers with ATEN_CPU_CAPABILITY=default (scalar
code) than with the AVX2/AVX512 ones the fixtures were made with. Under a scalar capability the draws
the fixtures rely on (the weight-fill rule, CA_NET's eps, train_step's noise, the default inits) are
made by a helper process with the vectorized kernels (:func:`seeded_draws`, :func:`seeded_state_dict`,
:func:`fill_by_rule`) and compared with the fixture exactly; the port's own draws inside forward are
then replaced by those (:func:`seeded` / :func:`replay_draws`, which checks their kind, shape and
order), and its RNG consumption is checked with this process's own generator.

Set ``ATTNGAN_GOLDEN_REPORT=path`` to append one JSON line per comparison (distance, noise, scale,
tolerance) to ``path`` when the test process exits.
"""
from __future__ import annotations

import atexit
import contextlib
import copy
import json
import math
import os
from pathlib import Path
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import torch

NOISE_MULTIPLE = 8.0      # K: allowed distance = K * measured float32 noise ...
NOISE_FLOOR = 2.0 ** -19  # ... + FLOOR * magnitude (16 float32 ulps, 1.9e-6)
NOISE_CAP = 2.0 ** -10    # float32-vs-float64 differences above this (relative) are not rounding noise


def load(golden_dir: Path, name: str) -> dict:
    return torch.load(Path(golden_dir) / name, weights_only=True)


def decode_u8(img_u8: torch.Tensor) -> torch.Tensor:
    """The fixtures' image encoding: x = (u8 - 128) / 128."""
    return (img_u8.float() - 128.0) / 128.0


def is_digest(x: Any) -> bool:
    return isinstance(x, Mapping) and x.get('digest') is True


def batch_size(fix: Mapping) -> int:
    """The fixture's batch size, read from a stored per-sample tensor."""
    for key in ('captions', 'cap_lens', 'z', 'sent_emb', 'labels', 'class_ids', 'noise', 'X', 'input'):
        if key in fix and torch.is_tensor(fix[key]):
            return fix[key].size(0)
    raise KeyError('no per-sample tensor in this fixture')


# ------------------------------------------------------------------ the float64 replay
def to64(x: Any) -> Any:
    """Floating tensors (also inside lists, tuples, dicts) -> float64; everything else unchanged."""
    if torch.is_tensor(x):
        return x.detach().double() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(to64(v) for v in x)
    if isinstance(x, dict):
        return {k: to64(v) for k, v in x.items()}
    return x


def module64(module: torch.nn.Module) -> torch.nn.Module:
    """A float64 copy of ``module`` (same weights, buffers, train/eval mode); the original is untouched."""
    return copy.deepcopy(module).double()


@contextlib.contextmanager
def replay_draws(draws: Sequence[Tuple[str, torch.Tensor]]):
    """``torch.randn`` and ``Tensor.normal_`` return the given draws instead of drawing.

    draws: ``[(kind, tensor)]`` in call order, kind ``'randn'`` (CA_NET's ``torch.randn(size, dtype=...,
    device=...)``) or ``'normal_'`` (train_step's z noise, ``noise.normal_(0, 1)``). A call of another kind,
    another shape, one too many, or a draw left unused fails: the port's RNG consumption is checked exactly.
    """
    queue = [(kind, d.detach()) for kind, d in draws]
    orig_randn, orig_normal = torch.randn, torch.Tensor.normal_

    def take(kind, shape):
        assert queue, f'replayed draws: unexpected {kind} call of shape {list(shape)}'
        want, d = queue.pop(0)
        assert want == kind, f'replayed draws: {kind} called where {want} was drawn'
        assert list(d.shape) == list(shape), f'replayed draws: {kind} of shape {list(shape)}, drawn {list(d.shape)}'
        return d

    def fake_randn(*size, dtype=None, device=None, **kw):
        assert not kw.get('generator'), 'replayed draws: randn with an explicit generator'
        shape = size[0] if len(size) == 1 and isinstance(size[0], (tuple, list, torch.Size)) else size
        d = take('randn', shape)
        return d.to(dtype=dtype or torch.get_default_dtype(), device=device or d.device)

    def fake_normal(self, mean=0.0, std=1.0, **kw):
        assert (mean, std) == (0, 1) and not kw.get('generator'), f'replayed draws: normal_({mean}, {std})'
        with torch.no_grad():
            return self.copy_(take('normal_', self.shape))

    torch.randn, torch.Tensor.normal_ = fake_randn, fake_normal
    try:
        yield
    finally:
        torch.randn, torch.Tensor.normal_ = orig_randn, orig_normal
    assert not queue, f'replayed draws: {len(queue)} not used ({[k for k, _ in queue]})'


@contextlib.contextmanager
def float64_replay(draws: Sequence[Tuple[str, torch.Tensor]] = ()):
    """Run the port in float64 with the float32 run's random draws (see :func:`replay_draws`; a float64
    draw from the same seed would differ). ``Tensor.float()`` returns float64 tensors unchanged: the port
    casts BCE / cross-entropy / KL / D-logit inputs with .float() for its bf16 fast path, and in the replay
    they must stay float64."""
    orig_float = torch.Tensor.float

    def float64_float(self, *a, **kw):
        return self if self.dtype == torch.float64 else orig_float(self, *a, **kw)

    torch.Tensor.float = float64_float
    try:
        with replay_draws(draws):
            yield
    finally:
        torch.Tensor.float = orig_float


# ------------------------------------------------------------------ the fixture's random draws
# torch's CPU normal_/uniform_ kernels give other numbers with ATEN_CPU_CAPABILITY=default (scalar code)
# than with the AVX2/AVX512 ones the fixtures were made with. Under a scalar capability the draws the
# fixtures rely on (the weight-fill rule, CA_NET's eps, train_step's noise, default inits) are made by a
# helper process with the vectorized kernels; the port's float computations still run here, and the
# port's own draws are replaced by those (replay_draws), which checks their kind, shape and order.

def draws_in_process() -> bool:
    """Whether this process's torch draws random numbers as the fixture generator's did (vectorized CPU kernels)."""
    return torch.backends.cpu.get_cpu_capability() in ('AVX2', 'AVX512')


def _rule_draws(base: int, entries) -> List[torch.Tensor]:
    return [(torch.rand if kind == 'rand' else torch.randn)(shape, generator=torch.Generator().manual_seed(base + i))
            for i, kind, shape in entries]


def _seeded_draws(seed: int, specs) -> List[torch.Tensor]:
    torch.manual_seed(seed)
    return [torch.randn(shape) if kind == 'randn' else torch.empty(shape).normal_(0, 1) for kind, shape in specs]


def _seeded_state_dict(seed: int, module: str, cls: str, kwargs: dict) -> dict:
    import importlib
    torch.manual_seed(seed)
    return dict(getattr(importlib.import_module(module), cls)(**kwargs).state_dict())


_HELPER = None
_HELPER_CACHE: dict = {}


def _vectorized(fn: str, *args):
    """``fn(*args)`` (one of the three above) here, or in the helper process when draws_in_process() is False."""
    if draws_in_process():
        return globals()[fn](*args)
    key = (fn, repr(args))
    if key in _HELPER_CACHE:
        return _HELPER_CACHE[key]
    global _HELPER
    import subprocess
    import sys
    import tempfile
    if _HELPER is None:
        env = {k: v for k, v in os.environ.items() if k != 'ATEN_CPU_CAPABILITY'}
        here = Path(__file__).resolve().parent
        code = (f'import sys; sys.path[:0] = [{str(here)!r}, {str(here.parent / "code")!r}]; '
                'import golden_utils; golden_utils._serve()')
        _HELPER = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                   stderr=subprocess.DEVNULL, env=env, text=True)
        atexit.register(_HELPER.kill)
    with tempfile.TemporaryDirectory() as tmp:
        req, resp = Path(tmp) / 'req.pt', Path(tmp) / 'resp.pt'
        torch.save((fn, args), req)
        _HELPER.stdin.write(f'{req}\t{resp}\n')
        _HELPER.stdin.flush()
        line = _HELPER.stdout.readline().strip()
        assert line == 'ok', f'the draws helper process failed: {line or "no answer"}'
        out = torch.load(resp, weights_only=True)
    _HELPER_CACHE[key] = out
    return out


def _serve() -> None:
    """The helper process: answers _vectorized requests (paths on stdin) until stdin closes."""
    import sys
    import traceback
    torch.set_num_threads(1)
    for line in sys.stdin:
        req, resp = line.rstrip('\n').split('\t')
        try:
            assert draws_in_process(), f'the helper has CPU capability {torch.backends.cpu.get_cpu_capability()}'
            fn, args = torch.load(req, weights_only=True)
            torch.save(globals()[fn](*args), resp)
            print('ok', flush=True)
        except Exception:  # noqa: BLE001 - reported to the caller
            print('error: ' + traceback.format_exc().replace('\n', ' | '), flush=True)


def seeded_draws(seed: int, specs: Sequence[Tuple[str, Sequence[int]]]) -> List[torch.Tensor]:
    """The draws ``torch.manual_seed(seed)`` then ``torch.randn(shape)`` / ``empty(shape).normal_(0, 1)``,
    in ``specs`` order, as the fixture generator's torch made them."""
    return _vectorized('_seeded_draws', seed, [(k, list(s)) for k, s in specs])


@contextlib.contextmanager
def seeded(seed: int, specs: Sequence[Tuple[str, Sequence[int]]]):
    """``torch.manual_seed(seed)``, for a port call that makes the draws ``specs``; where this process would
    draw other numbers (draws_in_process() False) those draws are replayed (replay_draws) as the
    fixture's torch makes them."""
    torch.manual_seed(seed)
    if draws_in_process():
        yield
        return
    with replay_draws(list(zip([k for k, _ in specs], seeded_draws(seed, specs)))):
        yield


def seeded_state_dict(seed: int, cls: type, **kwargs) -> dict:
    """``torch.manual_seed(seed); cls(**kwargs).state_dict()`` with the fixture generator's random draws."""
    return _vectorized('_seeded_state_dict', seed, cls.__module__, cls.__name__, kwargs)


# ------------------------------------------------------------------ comparisons
class GoldenMismatch(AssertionError):
    """A float comparison outside the noise-based tolerance; ``ratio`` = distance / tolerance."""

    def __init__(self, msg: str, ratio: float):
        super().__init__(msg)
        self.ratio = ratio


#: every comparison made in this process: name, distance, noise, scale, tolerance, ratio = dist / tol
RECORDS: List[dict] = []
_COLLECT: Optional[List[dict]] = None


@contextlib.contextmanager
def collect():
    """Inside, tolerance failures are recorded (and yielded as a list) instead of raised (mutation tests)."""
    global _COLLECT
    outer, _COLLECT = _COLLECT, []
    try:
        yield _COLLECT
    finally:
        _COLLECT = outer


def _judge(name: str, dist: float, noise: float, scale: float, cap: Any = 'default', extra_tol: float = 0.0) -> None:
    k, floor = NOISE_MULTIPLE, NOISE_FLOOR
    cap = NOISE_CAP if cap == 'default' else cap
    tol = k * noise + floor * scale + extra_tol
    ratio = dist / tol if tol > 0 else (0.0 if dist == 0 else math.inf)
    rec = dict(name=name, dist=dist, noise=noise, scale=scale, tol=tol, ratio=ratio, extra_tol=extra_tol,
               collected=_COLLECT is not None)
    RECORDS.append(rec)
    if _COLLECT is not None:
        _COLLECT.append(rec)
    assert math.isfinite(dist), f'{name}: not finite (distance {dist})'
    if cap is not None and noise > cap * scale:
        raise AssertionError(f'{name}: float32 and float64 runs differ by {noise:.3g} (scale {scale:.3g}): '
                             f'more than float noise, the float64 replay does not reproduce the float32 run')
    if dist > tol and _COLLECT is None:
        raise GoldenMismatch(f'{name}: distance {dist:.4g} > tolerance {tol:.4g} '
                             f'(= {k:g} x noise {noise:.3g} + {floor:.3g} x scale {scale:.4g}; '
                             f'{dist / max(noise, 1e-300):.3g} x noise)', ratio)


def elementwise_tolerance(actual: torch.Tensor, exact: torch.Tensor) -> float:
    """The rule's elementwise tolerance K * max|actual - exact| + FLOOR * max|exact| (finite entries)."""
    a, e = actual.detach().cpu().double(), exact.detach().cpu().double()
    fin = torch.isfinite(e)
    a, e = a[fin], e[fin]
    if not e.numel():
        return 0.0
    return NOISE_MULTIPLE * (a - e).abs().max().item() + NOISE_FLOOR * e.abs().max().item()


def _flat64(x) -> torch.Tensor:
    return (x.detach().cpu() if torch.is_tensor(x) else torch.as_tensor(x)).double().reshape(-1)


def assert_golden(actual, exact, expected: Any, name: str) -> None:
    """``actual`` (the port in float32) against a stored tensor, a digest dict or a number, at the rule's
    tolerance, with the noise measured against ``exact`` (the port in float64, same inputs and draws)."""
    a = actual.detach().cpu() if torch.is_tensor(actual) else torch.as_tensor(float(actual))
    e = exact.detach().cpu().double() if torch.is_tensor(exact) else torch.as_tensor(float(exact), dtype=torch.float64)
    assert a.shape == e.shape, f'{name}: float32 shape {tuple(a.shape)} != float64 shape {tuple(e.shape)}'
    a64 = a.double()
    if not is_digest(expected):
        exp = expected.detach().double() if torch.is_tensor(expected) else torch.as_tensor(float(expected),
                                                                                          dtype=torch.float64)
        assert tuple(a.shape) == tuple(exp.shape), f'{name}: shape {tuple(a.shape)} != {tuple(exp.shape)}'
        # non-finite entries (the -inf of masked logits) must be the same, exactly, in all three
        fin = torch.isfinite(exp)
        for t, what in ((a64, 'float32'), (e, 'float64')):
            assert torch.equal(torch.isfinite(t), fin) and torch.equal(t[~fin], exp[~fin]), \
                f'{name}: non-finite entries of the {what} run differ from the fixture'
        a64, e, exp = a64[fin], e[fin], exp[fin]
        err = (a64 - e).abs()
        noise = err.max().item() if err.numel() else 0.0
        scale = e.abs().max().item() if e.numel() else 0.0
        dist = (a64 - exp).abs().max().item() if a64.numel() else 0.0
        _judge(name, dist, noise, scale)
        return
    err = (a64 - e).abs()
    noise = err.max().item() if err.numel() else 0.0
    scale = e.abs().max().item() if e.numel() else 0.0
    assert list(a.shape) == list(expected['shape']), f"{name}: shape {list(a.shape)} != {expected['shape']}"
    k = expected['stride']
    strided = a[..., ::k, ::k].double()
    assert strided.shape == expected['strided'].shape, f'{name}: strided shape'
    _judge(f'{name} (strided by {k})', (strided - expected['strided'].double()).abs().max().item(), noise, scale)
    _judge(f'{name}.sum', abs(a64.sum().item() - expected['sum']), err.sum().item(), e.abs().sum().item())
    _judge(f'{name}.abs_sum', abs(a64.abs().sum().item() - expected['abs_sum']), err.sum().item(),
           e.abs().sum().item())
    _judge(f'{name}.sq_sum', abs(a64.square().sum().item() - expected['sq_sum']),
           (err * (a64 + e).abs()).sum().item(), e.square().sum().item())
    per = (lambda t: t.flatten(2).sum(2)) if a.dim() > 2 else (lambda t: t)
    nc_dist = (per(a64) - expected['nc_sum'].double()).abs()
    nc_tol = NOISE_MULTIPLE * per(err) + NOISE_FLOOR * per(e.abs())
    worst = int((nc_dist - nc_tol).argmax())
    _judge(f'{name}.nc_sum (worst of {nc_dist.numel()})', nc_dist.reshape(-1)[worst].item(),
           per(err).reshape(-1)[worst].item(), per(e.abs()).reshape(-1)[worst].item())


def assert_golden_sum(actual, exact, expected: float, name: str, extra_tol: float = 0.0,
                      cap: Any = 'default') -> None:
    """float64 sum of the float32 tensor ``actual`` against a stored sum, by the sum rule.

    extra_tol: added to the tolerance, for a discrete effect of the fixture's noise that ours need not
    show (parameters after Adam's first step, whose near-zero gradients may flip sign: see train_step)."""
    a, e = _flat64(actual), _flat64(exact)
    err = (a - e).abs()
    _judge(name, abs(a.sum().item() - expected), err.sum().item(), e.abs().sum().item(), extra_tol=extra_tol,
           cap=cap)


def assert_golden_norm(actual, exact, expected: float, name: str, cap: Any = 'default') -> None:
    """L2 norm of the float32 tensor ``actual`` against a stored norm; noise ||a - e||_2."""
    a, e = _flat64(actual), _flat64(exact)
    _judge(name, abs(a.norm().item() - expected), (a - e).norm().item(), e.norm().item(), cap=cap)


def assert_state_dict_equal(module: torch.nn.Module, expected: Mapping[str, torch.Tensor], name: str,
                            atol: float = 0.0, rtol: float = 0.0) -> None:
    sd = module.state_dict()
    assert list(sd) == list(expected), f'{name}: keys/order differ'
    for k, v in sd.items():
        torch.testing.assert_close(v.cpu(), expected[k], atol=atol, rtol=rtol,
                                   msg=lambda m, k=k: f'{name}.{k}: {m}')


def _dump_records() -> None:
    path = os.environ.get('ATTNGAN_GOLDEN_REPORT')
    if path and RECORDS:
        with open(path, 'a', encoding='utf-8') as f:
            for r in RECORDS:
                f.write(json.dumps(r) + '\n')


atexit.register(_dump_records)


# ------------------------------------------------------------------ the README's weight-fill rule
def fill_by_rule(module: torch.nn.Module, base: int) -> None:
    """The README's weight-fill rule, applied in place in the module's own state_dict order."""
    sd = module.state_dict()
    keys = list(sd)
    entries = [(i, 'rand' if k.endswith('running_var') else 'randn', list(sd[k].shape))
               for i, k in enumerate(keys) if not k.endswith('num_batches_tracked')]
    if draws_in_process():  # one tensor at a time
        draws = (_rule_draws(base, [e])[0] for e in entries)
    else:
        draws = iter(_vectorized('_rule_draws', base, entries))
    with torch.no_grad():
        for (i, _, _), r in zip(entries, draws):
            key = keys[i]
            t = sd[key]
            prefix = key[:key.rfind('.') + 1]
            is_bn = prefix + 'running_var' in sd
            if key.endswith('running_var'):
                value = 0.5 + r
            elif key.endswith('running_mean'):
                value = 0.1 * r
            elif key == prefix + 'weight' and is_bn:
                value = 1.0 + 0.1 * r
            elif key == prefix + 'bias' and is_bn:
                value = 0.1 * r
            elif t.dim() >= 2:
                fan = t.numel() // t.shape[0]
                value = r * math.sqrt(2.0 / fan)
            else:
                value = 0.05 * r
            t.copy_(value)


def check_fill(module: torch.nn.Module, fixture: Mapping) -> None:
    """The module's keys/shapes equal `state_keys` and its filled tensors match `fill_checksums`."""
    sd = module.state_dict()
    assert [[k, list(v.shape)] for k, v in sd.items()] == [[k, list(s)] for k, s in fixture['state_keys']]
    for k, (s, a) in fixture['fill_checksums'].items():
        t = sd[k].double()
        assert abs(t.sum().item() - s) <= 1e-9 * max(1.0, abs(a)), f'fill of {k}: sum differs'
        assert abs(t.abs().sum().item() - a) <= 1e-9 * max(1.0, abs(a)), f'fill of {k}: abs_sum differs'
