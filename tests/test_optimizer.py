"""The optimizers' own promises (common.optimizer): NT-ASGD's trigger, average, fine-tuning restart
and schedule, SGD's weight decay; the book's update rules, in place."""
import json

import numpy as np
import pytest

import common.optimizer
from common.optimizer import ASGD, SGD, Nesterov, RMSprop
from helpers.processes import run_python


def book_nesterov(p, g, v, lr, m):
    """The book's Nesterov step, one array: returns the new p and v."""
    v = m * v - lr * g
    return p + m * m * v - (1 + m) * lr * g, v


def book_rmsprop(p, g, h, lr, rho):
    """The book's RMSprop step, one array: returns the new p and h."""
    h = rho * h + (1 - rho) * g * g
    return p - lr * g / (np.sqrt(h) + 1e-7), h


@pytest.mark.parametrize('Optimizer,step,kwargs', [(Nesterov, book_nesterov, dict(lr=0.05, m=0.8)),
                                                    (RMSprop, book_rmsprop, dict(lr=0.02, rho=0.9))])
def test_update_is_the_books_formula_in_place(rng, Optimizer, step, kwargs):
    shapes = [(3, 4), (4,)]
    params = [rng.standard_normal(s) for s in shapes]
    arrays = list(params)                               # the same objects: updated in place
    refs = [p.copy() for p in params]
    slots = [np.zeros(s) for s in shapes]
    opt = Optimizer(*kwargs.values())
    for _ in range(5):
        grads = [rng.standard_normal(s) for s in shapes]
        opt.update(params, grads)
        for i, g in enumerate(grads):
            refs[i], slots[i] = step(refs[i], g, slots[i], **kwargs)
    assert all(a is b for a, b in zip(params, arrays))
    for p, r in zip(params, refs):
        np.testing.assert_allclose(p, r, rtol=1e-13, atol=1e-15)
    for s, r in zip(opt.v if Optimizer is Nesterov else opt.h, slots):
        np.testing.assert_allclose(s, r, rtol=1e-13, atol=1e-15)


def test_book_defaults_and_float32():
    assert (Nesterov().lr, Nesterov().momentum) == (0.01, 0.9)
    assert (RMSprop().lr, RMSprop().decay_rate) == (0.01, 0.99)
    for opt in (Nesterov(), RMSprop()):
        p, g = np.ones(3, np.float32), np.full(3, 0.5, np.float32)
        opt.update([p], [g])
        assert p.dtype == np.float32 and np.all(p < 1)


def test_star_import_gives_the_books_optimizers():
    namespace = {}
    exec('from common.optimizer import *', namespace)
    for name in ('np', 'GPU', 'SGD', 'Momentum', 'Nesterov', 'AdaGrad', 'RMSprop', 'Adam'):
        assert name in namespace, name
    assert set(namespace) - {'__builtins__'} == set(common.optimizer.__all__)


GPU_PROGRAM = r'''
import json
import numpy
from common import backend
from common.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
rng = numpy.random.default_rng(0)
out = {}
for opt in (SGD(0.1), Momentum(0.1), Nesterov(0.1), AdaGrad(0.1), RMSprop(0.1), Adam(0.1)):
    params = [backend.asarray(rng.standard_normal((3, 4)).astype('float32'))]
    for _ in range(3):
        opt.update(params, [backend.asarray(rng.standard_normal((3, 4)).astype('float32'))])
    out[type(opt).__name__] = backend.asnumpy(params[0]).tolist()
print(json.dumps(out))
'''


def test_optimizers_on_the_gpu_path_match_numpy():
    r = run_python(GPU_PROGRAM, {'DLFS_GPU': '1'}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    on_gpu = json.loads(r.stdout.strip().splitlines()[-1])
    on_cpu = json.loads(run_python(GPU_PROGRAM).stdout.strip().splitlines()[-1])
    assert len(on_cpu) == 6
    for name in on_cpu:
        np.testing.assert_array_equal(on_gpu[name], on_cpu[name], err_msg=name)


def test_asgd_trigger_is_awd_lstms_non_monotone_rule():
    opt = ASGD(1.0, nonmono=2)
    # L_k > min(L_1 .. L_{k-3}) starts averaging, from k = 4 on
    assert [opt.observe(v) for v in (5.0, 4.0, 4.5, 4.2)] == [None] * 4     # 4.5: too early; 4.2 < 5
    assert not opt.averaging
    assert opt.observe(4.1) == 'start'                   # 4.1 > min(5.0, 4.0)
    assert opt.averaging and opt.observe(9.0) is None    # it starts once (and restarts=0: never again)


def test_asgd_restart_is_awd_lstms_fine_tuning(rng):
    """With restarts=1 the rule is applied again to the checks of the average alone; when it fires the
    weights become the average and a new average starts from them; a second stall does nothing."""
    p = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    opt = ASGD(0.1, nonmono=1, restarts=1)
    assert [opt.observe(v) for v in (2.0, 3.0, 2.5)] == [None, None, 'start']
    for _ in range(3):
        opt.update(p, [rng.standard_normal(a.shape) for a in p])
    # the average's own checks: 2.45 > min(2.4) fires; the raw checks before (2.0) do not count
    assert [opt.observe(v) for v in (2.4, 2.3, 2.45)] == [None, None, 'restart']
    avg = [a.copy() for a in opt.avg]
    opt.restart(p)
    for a, b in zip(p, avg):
        np.testing.assert_array_equal(a, b)
    assert (opt.avg_count, opt.restarted, opt.phase_start) == (0, 1, 6)
    g = [rng.standard_normal(a.shape) for a in p]
    opt.update(p, g)
    for a, b, gi in zip(opt.avg, avg, g):                 # m = 1: the new average is the first new point
        np.testing.assert_allclose(a, b - 0.1 * gi, rtol=1e-15)
    assert [opt.observe(v) for v in (2.2, 2.1, 2.3)] == [None, None, None]     # restarts spent


def test_asgd_schedule_starts_by_the_rule_or_the_budget_and_restarts_from_the_average(rng):
    p = [rng.standard_normal(3)]
    opt = ASGD(0.1, nonmono=1, restarts=1)
    assert opt.schedule(2.0, p, spent=0.4, latest=0.5) is None
    assert opt.schedule(1.9, p, spent=0.5, latest=0.5) == 'latest' and opt.averaging     # the rule is silent
    assert (opt.phase_start, opt.schedule(1.8, p, spent=0.9, latest=0.5)) == (2, None)   # started once
    opt.update(p, [rng.standard_normal(3)])
    avg = opt.avg[0].copy()
    assert opt.schedule(1.7, p) is None and opt.schedule(1.85, p) == 'restart'           # 1.85 > min(1.8)
    np.testing.assert_array_equal(p[0], avg)                                             # p <- a
    assert (opt.restarted, opt.avg_count) == (1, 0)

    ruled = ASGD(0.1, nonmono=1)
    assert [ruled.schedule(v, p, spent=1.0) for v in (2.0, 2.5, 3.0)] == [None, None, 'start']  # latest=0: off
    late = ASGD(0.1, nonmono=1)
    assert [late.schedule(v, p, spent=0.9, latest=0.5) for v in (2.0, 2.5)] == ['latest', None]
    assert sorted(vars(ASGD(0.1))) == sorted(vars(ruled))          # no new state: checkpoints are as before


def test_sgd_weight_decay_is_l2_in_the_update(rng):
    p = rng.standard_normal((4, 3))
    g = rng.standard_normal((4, 3))
    view = p.T                                            # a non-contiguous view takes the other path
    expected = p - 0.5 * (g + 0.01 * p)
    SGD(0.5, weight_decay=0.01).update([p], [g])
    np.testing.assert_allclose(p, expected, rtol=1e-15)
    q, h = rng.standard_normal((5, 2)), rng.standard_normal((5, 2))
    expected = q.T - 0.5 * (h.T + 0.01 * q.T)
    SGD(0.5, weight_decay=0.01).update([q.T], [h.T])
    np.testing.assert_allclose(q.T, expected, rtol=1e-15)
    assert view.base is p


def test_asgd_averages_after_the_trigger_and_swaps_back_exactly(rng):
    p = [rng.standard_normal(3), rng.standard_normal((2, 2))]
    opt = ASGD(0.1, nonmono=1)
    seen = []
    for k in range(6):
        if k == 2:
            opt.observe(1.0)
            opt.observe(2.0)
            opt.observe(3.0)                             # worse than 1.0, two checks back: start
            assert opt.averaging
        g = [rng.standard_normal(a.shape) for a in p]
        opt.update(p, g)
        if opt.averaging:
            seen.append([a.copy() for a in p])
    mine = [a.copy() for a in p]
    with opt.averaged(p):
        for a, s in zip(p, zip(*seen)):
            np.testing.assert_allclose(a, np.mean(s, axis=0), rtol=1e-12)
    for a, m in zip(p, mine):
        np.testing.assert_array_equal(a, m)


def test_plain_sgd_never_averages(rng):
    opt = ASGD(0.1, nonmono=0)
    for v in (1.0, 2.0, 3.0, 4.0):
        assert not opt.observe(v)
    p = [rng.standard_normal(3)]
    opt.update(p, [np.ones(3)])
    with opt.averaged(p):
        assert opt.avg is None
