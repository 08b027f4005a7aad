"""The optimizers' own promises (common.optimizer): NT-ASGD's trigger, average, fine-tuning restart
and schedule, SGD's weight decay."""
import numpy as np

from common.optimizer import ASGD, SGD


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
