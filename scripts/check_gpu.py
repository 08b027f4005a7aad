"""The GPU path, checked end to end on a machine with CUDA and CuPy.

    python scripts/check_gpu.py                       # everything; writes runs/gpu-check.json
    python scripts/check_gpu.py --json docs/gpu-check.json   # the record in docs/gpu.md
    python scripts/check_gpu.py --data-dir DIR        # train on DIR/ptb/ptb.valid.txt (else random ids)
    python scripts/check_gpu.py --skip bench --quick  # small sizes, no benchmark

Sections (each prints one line per check, PASS or FAIL):
- gradcheck: every layer and two small models against central differences,
  float64 arrays on the device;
- oracle: TimeGRU, TimeLSTM and TimeSoftmaxWithLoss against PyTorch autograd
  (on CUDA when PyTorch has it), float64; TimeGRU(reset_after=True) with
  weights imported from nn.GRU against nn.GRU itself (cuDNN on CUDA), float64
  and float32;
- graph: the CUDA-graph path (common/cuda/): the capturable GEMM against
  cupy.matmul for every operand layout, beta 0/1, float32/float64, eager and
  replayed, and in float32 and TF32 (--tf32) against float64; the training step captured (its node count); graph replays
  against eager launches in float64 with dropout and an lr change mid-run
  (1e-12), the masks equal to eager and new at every replay; evaluation
  graph against eager; eager and graph step times;
- train: book-size BetterRnnlm without dropout, the same iterations on CuPy
  here and on NumPy in a subprocess, in float64 and float32: the loss curves
  must agree (see check_training for the tolerances);
- script: train_better_rnnlm.py --gpu for two epochs with a checkpoint,
  --resume for a third, save -> load on the device, generate_text.py --gpu;
- parallel: a one-rank NCCL communicator's all-reduce and broadcast of device
  buffers; train_better_rnnlm.py on two ranks sharing this GPU over MPI host
  buffers (the test mode DLFS_SHARE_GPU=1) against one process, float64;
- bench: scripts/bench.py --gpu: ours with graphs and eager, PyTorch cuDNN
  with its default TF32 and in full float32 when available; figures, not
  pass/fail (the ratios are ours with graphs over each PyTorch row).

Exits 1 when any check fails. The same script runs on the NumPy backend
without --gpu (and in the tests, on the stand-in CuPy).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

import numpy

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import support  # noqa: E402  (after the path is set)
from common.gradcheck import gru_reference, layer_error, model_error  # noqa: E402
from common.run.cli import ArgumentParser  # noqa: E402  (one-line errors)

SECTIONS = ('gradcheck', 'oracle', 'graph', 'train', 'script', 'parallel', 'bench')
BOOK = dict(vocab=10000, wordvec=650, hidden=650, batch=20, time=35, lr=10.0, max_grad=0.25)
QUICK = dict(vocab=300, wordvec=32, hidden=32, batch=4, time=8, lr=10.0, max_grad=0.25)


class Report:
    """Collects check results; prints each as it comes."""

    def __init__(self):
        self.rows = []

    def add(self, section, name, ok, detail='', **figures):
        status = 'PASS' if ok else ('INFO' if ok is None else 'FAIL')
        self.rows.append(dict(section=section, check=name, status=status, detail=detail, **figures))
        print(f'{status}  {section:<9} {name:<34} {detail}', flush=True)

    @property
    def failed(self):
        return [r for r in self.rows if r['status'] == 'FAIL']


# ------------------------------------------------------------------ gradcheck

def model_loss(model, xs, ts):
    """The loss of ``model`` on (xs, ts) from a fresh state, as a function for the gradient check."""
    def loss():
        model.reset_state()
        return model.forward(xs, ts, train_flg=True)
    return loss


def check_gradients(report, backend):
    from common.layers import Affine, Embedding, MatMul, Sigmoid, SigmoidWithLoss, Softmax, SoftmaxWithLoss
    from common.time_layers import (TimeAffine, TimeDropout, TimeEmbedding, TimeGRU, TimeLSTM, TimeRNN,
                                    TimeSoftmaxWithLoss)
    from ch_gru.rnnlm import Rnnlm
    rng = numpy.random.default_rng(0)

    def dev(*shape, scale=1.0):
        return backend.asarray(rng.standard_normal(shape) * scale)

    def ids(high, *shape):
        return backend.asarray(rng.integers(0, high, shape))

    N, T, D, H = 2, 3, 3, 4
    labels = ids(5, N, T)
    labels[0, 1] = -1                                      # one ignored position
    h0 = dev(N, H)
    stateful_gru = TimeGRU(dev(D, 3 * H, scale=.5), dev(H, 3 * H, scale=.5), dev(3 * H), stateful=True)
    stateful_lstm = TimeLSTM(dev(D, 4 * H, scale=.5), dev(H, 4 * H, scale=.5), dev(4 * H), stateful=True)
    tied = dev(5, D)
    cases = [
        ('MatMul', MatMul(dev(3, 4)), [dev(2, 3)], {}),
        ('Affine', Affine(dev(3, 4), dev(4)), [dev(2, 3)], {}),
        ('Softmax', Softmax(), [dev(3, 5)], {}),
        ('Sigmoid', Sigmoid(), [dev(3, 5)], {}),
        ('SoftmaxWithLoss', SoftmaxWithLoss(), [dev(3, 5), ids(5, 3)], {}),
        ('SigmoidWithLoss', SigmoidWithLoss(), [dev(6), ids(2, 6)], {}),
        ('Embedding', Embedding(dev(5, 4)), [ids(5, 2, 3)], dict(input_grad=False)),
        ('TimeEmbedding', TimeEmbedding(dev(5, 4)), [ids(5, N, T)], dict(input_grad=False)),
        ('TimeAffine', TimeAffine(dev(D, 5), dev(5)), [dev(N, T, D)], {}),
        ('TimeAffine (tied, W = E.T)', TimeAffine(tied.T, dev(5)), [dev(N, T, D)], {}),
        ('TimeRNN', TimeRNN(dev(D, H, scale=.5), dev(H, H, scale=.5), dev(H)), [dev(N, T, D)], {}),
        ('TimeLSTM (carried h, c)', stateful_lstm, [dev(N, T, D)],
         dict(before=lambda: stateful_lstm.set_state(h0, h0 * 0.5))),
        ('TimeGRU (carried h)', stateful_gru, [dev(N, T, D)], dict(before=lambda: stateful_gru.set_state(h0))),
        ('TimeSoftmaxWithLoss (ignore -1)', TimeSoftmaxWithLoss(), [dev(N, T, 5), labels], {}),
    ]
    for name, layer, inputs, kw in cases:
        err = layer_error(layer, inputs, rng, **kw)
        report.add('gradcheck', name, err <= 1, f'worst error {err:.2g} of tolerance', of_tolerance=err)

    drop = TimeDropout(0.5)
    x = backend.asarray(numpy.ones((50, 40, 2)))
    y = backend.asnumpy(drop.forward(x))
    d = backend.asnumpy(drop.backward(backend.asarray(numpy.full(x.shape, 3.0))))
    kept = float((y > 0).mean())
    ok = set(numpy.unique(y)) <= {0.0, 2.0} and numpy.array_equal(d, 3.0 * y) and abs(kept - 0.5) < 0.05
    report.add('gradcheck', 'TimeDropout (mask, inverted scale)', ok, f'kept {kept:.3f} of 1 - p = 0.5')

    for cell in ('gru', 'lstm'):
        model = Rnnlm(7, 4, 4, num_layers=2, dropout_ratio=0.0, cell=cell, tie_weights=True, dtype='float64')
        err = model_error(model, model_loss(model, ids(7, 2, 3), ids(7, 2, 3)))
        report.add('gradcheck', f'Rnnlm ({cell}, 2 layers, tied)', err <= 1, f'worst error {err:.2g} of tolerance',
                   of_tolerance=err)


# --------------------------------------------------------------------- oracle

class Oracle:
    """Layers against PyTorch autograd in float64: the same inputs, outputs and gradients compared."""

    def __init__(self, report, backend, torch):
        self.report, self.backend, self.torch = report, backend, torch
        self.device = 'cuda' if backend.GPU and torch.cuda.is_available() else 'cpu'
        self.rng = numpy.random.default_rng(1)

    def dev(self, *shape, scale=1.0):
        return self.backend.asarray(self.rng.standard_normal(shape) * scale)

    def t(self, a):
        """A float64 leaf tensor of the array ``a``, on the oracle's device."""
        return self.torch.tensor(self.backend.asnumpy(a), dtype=self.torch.float64, device=self.device,
                                 requires_grad=True)

    def compare(self, name, pairs, tol=1e-10):
        asnumpy = self.backend.asnumpy
        err = max(float(numpy.abs(asnumpy(m) - r.detach().cpu().numpy()).max()
                        / max(numpy.abs(r.detach().cpu().numpy()).max(), 1e-12)) for m, r in pairs)
        self.report.add('oracle', f'{name} vs torch ({self.device})', err < tol, f'max rel diff {err:.1e}',
                        rel_diff=err)

    def gru_reset_after(self, N, T, D, H, dtype):
        """TimeGRU(reset_after=True) with the weights of an nn.GRU (2 layers) against that nn.GRU:
        outputs, input and initial-state gradients, and every weight gradient mapped back."""
        from ch_gru.torch_interop import from_torch_gru, gru_to_torch
        torch, backend = self.torch, self.backend
        torch.manual_seed(0)
        tdt = getattr(torch, dtype)
        ref = torch.nn.GRU(D, H, num_layers=2, batch_first=True).to(self.device, tdt)
        layers = from_torch_gru(ref, stateful=True)
        xs, h0, dhs = self.dev(N, T, D), self.dev(2, N, H), self.dev(N, T, H)
        tx, th = (torch.tensor(backend.asnumpy(a), dtype=tdt, device=self.device, requires_grad=True)
                  for a in (xs, h0))
        tallow = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False          # full float32 products, as CuPy's
        try:
            ths, _ = ref(tx, th)
            (ths * torch.tensor(backend.asnumpy(dhs), dtype=tdt, device=self.device)).sum().backward()
        finally:
            torch.backends.cudnn.allow_tf32 = tallow
        h = xs.astype(dtype)
        for k, layer in enumerate(layers):
            layer.set_state(h0[k].astype(dtype))
            h = layer.forward(h)
        d = dhs.astype(dtype)
        for layer in reversed(layers):
            d = layer.backward(d)
        pairs = [(h, ths), (d, tx.grad), (numpy.stack([backend.asnumpy(la.dh) for la in layers]), th.grad)]
        for k, layer in enumerate(layers):
            mapped = gru_to_torch(*(backend.asnumpy(g).astype(numpy.float64) for g in layer.grads))
            pairs += [(m, getattr(ref, f'{n}_l{k}').grad) for m, n in
                      zip(mapped, ('weight_ih', 'weight_hh', 'bias_ih', 'bias_hh'))]
        self.compare(f'TimeGRU reset_after ({dtype})', pairs, 1e-10 if dtype == 'float64' else 1e-4)

    def gru(self, N, T, D, H):
        """TimeGRU against the book's GRU equations (common.gradcheck.gru_reference) run by torch."""
        from common.time_layers import TimeGRU
        dev, t = self.dev, self.t
        Wx, Wh, b, xs, h0, dhs = dev(D, 3 * H, scale=.5), dev(H, 3 * H, scale=.5), dev(3 * H), dev(N, T, D), \
            dev(N, H), dev(N, T, H)
        gru = TimeGRU(Wx, Wh, b, stateful=True)
        gru.set_state(h0)
        hs = gru.forward(xs)
        dxs = gru.backward(dhs)
        tWx, tWh, tb, txs, th = t(Wx), t(Wh), t(b), t(xs), t(h0)
        ths = gru_reference(txs, tWx, tWh, tb, th, xp=self.torch)
        (ths * t(dhs).detach()).sum().backward()
        self.compare('TimeGRU', [(hs, ths), (dxs, txs.grad), (gru.dh, th.grad),
                                 *zip(gru.grads, (tWx.grad, tWh.grad, tb.grad))])

    def lstm(self, N, T, D, H):
        """TimeLSTM against torch.nn.LSTM, gate blocks i | f | g | o against the book's f | g | i | o."""
        from common.time_layers import TimeLSTM
        torch, dev, asnumpy = self.torch, self.dev, self.backend.asnumpy
        Wx, Wh, b, xs, dhs = dev(D, 4 * H, scale=.5), dev(H, 4 * H, scale=.5), dev(4 * H), dev(N, T, D), \
            dev(N, T, H)
        lstm = TimeLSTM(Wx, Wh, b)
        hs = lstm.forward(xs)
        dxs = lstm.backward(dhs)
        order = numpy.r_[2 * H:3 * H, 0:H, H:2 * H, 3 * H:4 * H]
        ref = torch.nn.LSTM(D, H, batch_first=True).double().to(self.device)
        with torch.no_grad():
            ref.weight_ih_l0.copy_(torch.tensor(asnumpy(Wx)[:, order].T))
            ref.weight_hh_l0.copy_(torch.tensor(asnumpy(Wh)[:, order].T))
            ref.bias_ih_l0.copy_(torch.tensor(asnumpy(b)[order]))
            ref.bias_hh_l0.zero_()
        txs = self.t(xs)
        ths, _ = ref(txs)
        (ths * self.t(dhs).detach()).sum().backward()
        inverse = numpy.argsort(order)
        self.compare('TimeLSTM', [(hs, ths), (dxs, txs.grad),
                                  (lstm.grads[0], ref.weight_ih_l0.grad.T[:, inverse]),
                                  (lstm.grads[1], ref.weight_hh_l0.grad.T[:, inverse]),
                                  (lstm.grads[2], ref.bias_ih_l0.grad[inverse])])

    def softmax(self, N, T, V):
        """TimeSoftmaxWithLoss against cross_entropy, with an ignored label."""
        from common.time_layers import TimeSoftmaxWithLoss
        torch, backend = self.torch, self.backend
        xs, ts = self.dev(N, T, V), backend.asarray(self.rng.integers(0, V, (N, T)))
        ts[1, 2] = -1
        layer = TimeSoftmaxWithLoss()
        loss = layer.forward(xs, ts)
        dxs = layer.backward()
        txs = self.t(xs)
        labels = torch.tensor(backend.asnumpy(ts).reshape(-1), device=self.device)
        tl = torch.nn.functional.cross_entropy(txs.reshape(-1, V), labels, ignore_index=-1)
        tl.backward()
        self.compare('TimeSoftmaxWithLoss', [(loss, tl), (dxs, txs.grad)])


def check_oracle(report, backend):
    torch = support.torch_available()
    if torch is None:
        report.add('oracle', 'PyTorch autograd', None, 'PyTorch not installed: skipped')
        return
    oracle = Oracle(report, backend, torch)
    N, T, D, H, V = 3, 6, 4, 5, 7
    oracle.gru(N, T, D, H)
    for dtype in ('float64', 'float32'):
        oracle.gru_reset_after(N, T, D, H, dtype)
    oracle.lstm(N, T, D, H)
    oracle.softmax(N, T, V)


# ---------------------------------------------------------------------- train

def train_curve(cfg, iters, corpus, dtype='float32'):
    """Losses of ``iters`` BetterRnnlm iterations (no dropout) and s/iter;
    run in this process on the backend already chosen."""
    from common import backend
    from common.optimizer import SGD
    from common.run.parts import Part
    from common.trainer import RnnlmTrainer
    from ch_gru.better_rnnlm import BetterRnnlm
    backend.seed(0)
    model = BetterRnnlm(cfg['vocab'], cfg['wordvec'], cfg['hidden'], dropout_ratio=0.0, dtype=dtype)
    losses, seconds = [], []

    class Record(Part):
        def iteration(self, trainer):
            losses.append(trainer.loss)
            seconds.append(time.perf_counter())

    trainer = RnnlmTrainer(model, SGD(cfg['lr']), parts=[Record()])
    xs, ts = corpus[:-1], corpus[1:]
    n = cfg['batch'] * cfg['time'] * iters
    start = time.perf_counter()
    trainer.fit(xs[:n + 1], ts[:n + 1], max_epoch=1, batch_size=cfg['batch'], time_size=cfg['time'],
                max_grad=cfg['max_grad'], eval_interval=0)
    backend.synchronize()
    total = time.perf_counter() - start
    losses = [float(v) for v in losses]
    warm = (total - (seconds[1] - start)) / max(len(seconds) - 2, 1) if len(seconds) > 2 else total
    return {'losses': losses, 's_per_iter': warm}


def load_corpus(cfg, data_dir, n):
    if data_dir:
        path = os.path.join(data_dir, 'ptb', 'ptb.valid.txt')
        if os.path.exists(path):
            from dataset import ptb
            (corpus,), word_to_id, _ = ptb.load_files(path)
            return numpy.minimum(corpus, cfg['vocab'] - 1)[:n].astype(numpy.int32), path
    return numpy.random.default_rng(0).integers(0, cfg['vocab'], n).astype(numpy.int32), 'random ids'


def check_training(report, backend, cfg, data_dir, iters):
    """The same run here and on NumPy. In float64 the curves must agree to
    1e-6 throughout. In float32 they agree at first and then drift apart by
    chaos (lr 10: rounding differences grow ~10x every few steps), so only
    the first five iterations are held to 1e-4; the rest is reported."""
    corpus, source = load_corpus(cfg, data_dir, cfg['batch'] * cfg['time'] * iters + 2)
    for dtype, tol, checked in (('float64', 1e-6, iters), ('float32', 1e-4, 5)):
        ours = train_curve(cfg, iters, corpus, dtype)
        ref = numpy_curve(cfg, iters, corpus, dtype)
        if isinstance(ref, str):
            report.add('train', f'NumPy reference run ({dtype})', False, ref)
            continue
        a, b = numpy.array(ours['losses']), numpy.array(ref['losses'])
        if len(a) != len(b) or len(a) != iters:
            report.add('train', f'loss curve vs NumPy ({dtype})', False, f'{len(a)} and {len(b)} losses')
            continue
        rel = numpy.abs(a - b) / numpy.abs(b)
        head, whole = float(rel[:checked].max()), float(rel.max())
        fell = a[-1] < a[0] or 'random' in source
        report.add('train', f'loss curve vs NumPy ({dtype}, {iters} it)', head < tol and bool(fell),
                   f'max rel diff {head:.1e} over {checked} it (whole run {whole:.1e}); '
                   f'loss {a[0]:.3f} -> {a[-1]:.3f} ({source})', rel_diff=head, rel_diff_whole=whole,
                   losses=ours['losses'], numpy_losses=ref['losses'])
        report.add('train', f'step time ({dtype})', None, f"{1e3 * ours['s_per_iter']:.1f} ms/iter here, "
                   f"{1e3 * ref['s_per_iter']:.1f} ms/iter on NumPy", ms_per_iter=1e3 * ours['s_per_iter'],
                   numpy_ms_per_iter=1e3 * ref['s_per_iter'], config=cfg)


def numpy_curve(cfg, iters, corpus, dtype):
    """:func:`train_curve` on NumPy, in a subprocess; an error line on failure."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, 'corpus.npy')
        numpy.save(path, corpus)
        env = {k: v for k, v in os.environ.items() if k != 'DLFS_GPU'}
        env['PYTHONPATH'] = support.python_path()
        r = subprocess.run([sys.executable, os.path.abspath(__file__), '--worker-train', path,
                            '--worker-iters', str(iters), '--worker-dtype', dtype]
                           + (['--quick'] if cfg is QUICK else []),
                           capture_output=True, text=True, env=env, cwd=ROOT)
    if r.returncode != 0:
        return support.last_line(r)
    return support.last_json(r.stdout)


# ---------------------------------------------------------------------- graph

def check_gemm(report, backend):
    """common/cuda/gemm.py against cupy.matmul: the operand layouts the layers
    use, beta 0 and 1, float32 and float64, eagerly and replayed in a graph."""
    from common.cuda.graph import install_gemm
    cp, gemm = backend.np, install_gemm()
    rng = numpy.random.default_rng(0)
    worst = {}
    for dtype, tol in (('float32', 1e-5), ('float64', 1e-12)):
        def dev(*shape):
            return cp.asarray(rng.standard_normal(shape).astype(dtype))
        ops_a = {'C': dev(37, 29), 'T': dev(29, 37).T, 'block': dev(37, 60)[:, 3:32]}
        ops_b = {'C': dev(29, 41), 'T': dev(41, 29).T, 'block': dev(29, 90)[:, 10:51]}
        for (an, a), (bn, b) in ((x, y) for x in ops_a.items() for y in ops_b.items()):
            for outn, beta in (('C', 0), ('C', 1), ('T', 0), ('block', 1)):
                out = {'C': dev(37, 41), 'T': dev(41, 37).T, 'block': dev(37, 100)[:, 7:48]}[outn]
                want = cp.matmul(a, b) + (out if beta else 0)
                gemm(a, b, out, beta=beta)
                worst[f'{dtype} {an}@{bn}->{outn} beta {beta}'] = float(abs(out - want).max() / abs(want).max()) / tol
    name = max(worst, key=worst.get)
    report.add('graph', 'GEMM vs cupy.matmul (eager)', worst[name] < 1,
               f'{len(worst)} cases, worst {worst[name]:.2g} of tolerance ({name})')
    check_tf32(report, backend)
    a, b = cp.ones((8, 16), 'float32'), cp.ones((16, 4), 'float32')
    out = cp.zeros((8, 4), 'float32')
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        stream.begin_capture()
        gemm(a, b, out, beta=1)
        graph = stream.end_capture()
    for _ in range(3):
        graph.launch()
    backend.synchronize()
    got = float(out.max())
    report.add('graph', 'GEMM captured, beta 1, 3 replays', got == 48.0, f'{got:g} (expected 48)')


def check_tf32(report, backend):
    """--tf32: a float32 product in TF32 against float64, within its own
    tolerance (TF32 keeps 10 mantissa bits: ~1e-3 relative per product)."""
    from common.cuda.gemm import Gemm
    cp = backend.np
    rng = numpy.random.default_rng(3)
    a, b = (rng.standard_normal(s) for s in ((256, 650), (650, 1950)))
    want = a @ b
    for tf32, tol in ((False, 1e-5), (True, 5e-3)):
        got = Gemm(cp, tf32=tf32)(cp.asarray(a, dtype='float32'), cp.asarray(b, dtype='float32'))
        err = float(numpy.abs(backend.asnumpy(got) - want).max() / numpy.abs(want).max())
        report.add('graph', f'GEMM float32{" TF32" if tf32 else ""} vs float64', err < tol,
                   f'max rel diff {err:.1e} (tolerance {tol:g})', rel_diff=err)


def graph_run(cfg, iters, graph, dtype='float64', lr_change=None, dropout=0.5):
    """Per-iteration losses, dropout masks and the trainer of a short run."""
    from common import backend
    from common.optimizer import SGD
    from common.run.parts import Part
    from common.trainer import RnnlmTrainer
    from ch_gru.better_rnnlm import BetterRnnlm
    backend.seed(0)
    model = BetterRnnlm(cfg['vocab'], cfg['wordvec'], cfg['hidden'], dropout_ratio=dropout, dtype=dtype)
    losses, masks = [], []

    class Record(Part):
        def iteration(self, trainer):
            losses.append(float(trainer.loss))
            if dropout:
                masks.append(backend.asnumpy(trainer.model.dropouts[1].mask))
            if lr_change and trainer.iteration == iters // 2:
                trainer.optimizer.lr *= lr_change

    trainer = RnnlmTrainer(model, SGD(cfg['lr']), parts=[Record()], cuda_graph=graph)
    corpus = numpy.random.default_rng(1).integers(0, cfg['vocab'], cfg['batch'] * cfg['time'] * iters + 2)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=cfg['batch'], time_size=cfg['time'],
                max_grad=cfg['max_grad'], eval_interval=0)
    return numpy.array(losses), masks, trainer


def check_graph(report, backend, cfg, quick):
    """The training step as one graph: capture and node count; the curve of
    graph replays against eager launches in float64 (dropout on, masks equal,
    new masks every replay, an lr change mid-run); evaluation; step times."""
    if not backend.GPU:
        report.add('graph', 'CUDA graphs', None, 'NumPy backend: nothing to capture')
        return
    check_gemm(report, backend)
    small = QUICK
    eager, eager_masks, _ = graph_run(small, 12, False, lr_change=0.25)
    graph, graph_masks, trainer = graph_run(small, 12, True, lr_change=0.25)
    g = next(iter(trainer.graphs.graphs.values()), None)
    report.add('graph', 'training step captured', trainer.graphs.captures == 1 and trainer.graphs.off is None,
               f'{trainer.graphs.captures} capture(s), {g.node_count() if g else "no"} nodes'
               + (f'; off: {trainer.graphs.off}' if trainer.graphs.off else ''),
               nodes=g.node_count() if g else None)
    rel = float(numpy.abs(graph - eager).max() / numpy.abs(eager).max())
    report.add('graph', 'curve: graph vs eager (float64, lr change)', rel < 1e-12,
               f'max rel diff {rel:.1e} over {len(graph)} iterations', rel_diff=rel)
    same = all(numpy.array_equal(a, b) for a, b in zip(eager_masks, graph_masks))
    differ = all(not numpy.array_equal(a, b) for a, b in zip(graph_masks[2:], graph_masks[3:]))
    report.add('graph', 'dropout masks: as eager, new each replay', same and differ,
               f'equal to eager: {same}; differ between replays: {differ}')
    check_graph_eval(report, backend, small)
    for dtype in ('float32',) if quick else ('float32', 'float64'):
        timing = {name: graph_run(cfg, 12, on, dtype=dtype, dropout=0.5)[2] for name, on in (('eager', False),
                                                                                             ('graph', True))}
        ms = {name: 1e3 * t.epoch_seconds / max(t.done, 1) for name, t in timing.items()}
        report.add('graph', f'step time ({dtype})', None, f"eager {ms['eager']:.2f} ms/iter, graph "
                   f"{ms['graph']:.2f} ms/iter (incl. warm-up and capture)", ms_per_iter=ms, config=cfg)


def check_graph_eval(report, backend, cfg):
    from common import config
    from common.util import eval_perplexity
    from ch_gru.better_rnnlm import BetterRnnlm
    backend.seed(0)
    model = BetterRnnlm(cfg['vocab'], cfg['wordvec'], cfg['hidden'], dtype='float64')
    corpus = numpy.random.default_rng(2).integers(0, cfg['vocab'], 10 * cfg['time'] * 6 + 1)
    ppl = {}
    for on in (False, True):
        config.CUDA_GRAPH = on
        model.reset_state()
        ppl[on] = [eval_perplexity(model, corpus, batch_size=10, time_size=cfg['time']) for _ in range(2)]
    config.CUDA_GRAPH = True
    rel = max(abs(a - b) / b for a, b in zip(ppl[True], ppl[False]))
    report.add('graph', 'evaluation: graph vs eager (float64)', rel < 1e-12,
               f'perplexity {ppl[True][0]:.4f} / {ppl[False][0]:.4f}, rel diff {rel:.1e}', rel_diff=rel)


# --------------------------------------------------------------------- script

def run_script(args, gpu, **env_extra):
    cmd = [sys.executable, *args] + (['--gpu'] if gpu else [])
    env = support.child_env(MPLBACKEND='Agg', **env_extra)
    return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)


def check_script(report, backend, data_dir, quick):
    from ch_gru.rnnlm import load_model
    with tempfile.TemporaryDirectory() as tmp:
        files = small_corpus(tmp, data_dir, 400 if quick else 1500)
        out = os.path.join(tmp, 'run')
        size = '16' if quick else '128'
        common = ['scripts/train_better_rnnlm.py', '--train-file', files[0], '--valid-file', files[1],
                  '--test-file', files[2], '--wordvec-size', size, '--hidden-size', size, '--batch-size', '8',
                  '--time-size', '10', '--lr', '10', '--eval-interval', '0', '--seed', '1', '--out-dir', out]
        r = run_script(common + ['--max-epoch', '2'], backend.GPU)
        log = support.read_log(out)
        epochs = [e for e in log if e.get('event') == 'epoch']
        report.add('script', 'train_better_rnnlm.py, 2 epochs', r.returncode == 0 and len(epochs) == 2,
                   support.last_line(r) if r.returncode else f"valid ppl {[round(e['valid_ppl'], 1) for e in epochs]}")
        if r.returncode:
            return
        r = run_script(common + ['--max-epoch', '3', '--resume', os.path.join(out, 'checkpoint.npz')], backend.GPU)
        epochs = [e for e in support.read_log(out) if e.get('event') == 'epoch']
        ok = r.returncode == 0 and [e['epoch'] for e in epochs][-1:] == [3]
        report.add('script', '--resume for a third epoch', ok,
                   support.last_line(r) if r.returncode else f"epochs logged {[e['epoch'] for e in epochs]}")

        path = os.path.join(out, 'BetterRnnlm.npz')
        model, _ = load_model(path)
        again = os.path.join(tmp, 'again.npz')
        model.save_params(again)
        other, _ = load_model(again)
        xs = backend.asarray(numpy.arange(20).reshape(2, 10) % model.params[0].shape[0])
        same = numpy.array_equal(backend.asnumpy(model.predict(xs)), backend.asnumpy(other.predict(xs)))
        report.add('script', 'save -> load on the device', same, 'predictions identical' if same else 'differ')

        r = run_script(['scripts/generate_text.py', path, '--length', '20', '--samples', '2', '--seed', '3'],
                       backend.GPU)
        text = r.stdout.strip()
        report.add('script', 'generate_text.py', r.returncode == 0 and len(text.split()) >= 10,
                   support.last_line(r) if r.returncode else repr(text[:60]))


# ------------------------------------------------------------------- parallel

def check_nccl_one_rank(report, backend):
    """NCCL with one rank on this GPU: the all-reduce mean and the broadcast the
    data-parallel steps call, on real device buffers (two GPUs are needed for more)."""
    try:
        from cupy.cuda import nccl
    except ImportError as exc:
        report.add('parallel', 'NCCL, one rank: allReduce, bcast', None, f'no NCCL in this CuPy ({exc})')
        return
    from common.parallel.communicator import NcclCollectives
    gpus = NcclCollectives(nccl, nccl.NcclCommunicator(1, nccl.get_unique_id(), 0), 1)
    flat = backend.np.arange(1000, dtype='float32') / 7
    want = backend.asnumpy(flat).copy()
    gpus.allreduce_mean_(flat)
    a = backend.np.ones((3, 5), dtype='float64')
    gpus.bcast_arrays([a])
    backend.synchronize()
    ok = numpy.array_equal(backend.asnumpy(flat), want) and numpy.array_equal(backend.asnumpy(a), numpy.ones((3, 5)))
    report.add('parallel', 'NCCL, one rank: allReduce, bcast', ok, 'equal' if ok else 'values changed')


def check_parallel(report, backend, data_dir, quick):
    if backend.GPU:
        check_nccl_one_rank(report, backend)
    if not shutil.which('mpiexec'):
        report.add('parallel', 'two ranks on one GPU', None, 'no mpiexec (pip install -e ".[mpi]")')
        return
    with tempfile.TemporaryDirectory() as tmp:
        files = small_corpus(tmp, data_dir, 200 if quick else 800)
        args = ['scripts/train_better_rnnlm.py', '--train-file', files[0], '--valid-file', files[1], '--test-file',
                files[2], '--wordvec-size', '16', '--hidden-size', '16', '--batch-size', '8', '--time-size', '10',
                '--max-epoch', '2', '--eval-interval', '0', '--seed', '1', '--dtype', 'float64']
        ends = {}
        for n in (1, 2):
            out = os.path.join(tmp, str(n))
            r = run_script(args + ['--out-dir', out, '--processes', str(n)], backend.GPU, DLFS_SHARE_GPU='1')
            if r.returncode:
                report.add('parallel', f'{n} process(es), DLFS_SHARE_GPU=1', False, support.last_line(r))
                return
            ends[n] = (support.read_log(out)[-1], numpy.load(os.path.join(out, 'BetterRnnlm.npz')))
        (one, a), (two, b) = ends[1], ends[2]
        err = max(float(numpy.abs(a[k] - b[k]).max() / numpy.abs(a[k]).max()) for k in a.files if a[k].dtype.kind == 'f')
        ok = err <= 1e-5 and abs(one['test_ppl'] / two['test_ppl'] - 1) <= 1e-5
        report.add('parallel', 'two ranks on one GPU = one process', ok,
                   f"test ppl {one['test_ppl']:.6f} / {two['test_ppl']:.6f}, params rel {err:.1e}", rel_err=err)


def small_corpus(tmp, data_dir, n):
    """train / valid / test files of n, n/5 and n/5 lines: PTB test lines when available
    (dataset.derived.ptb_lines), else random words."""
    if data_dir and os.path.exists(os.path.join(data_dir, 'ptb', 'ptb.test.txt')):
        from dataset.derived import ptb_lines
        return list(ptb_lines(n, data_dir, tmp))
    rng = numpy.random.default_rng(0)
    words = [f'w{i}' for i in range(50)]
    lines = [' '.join(rng.choice(words, 12)) for _ in range(n + 2 * (n // 5))]
    parts = lines[:n], lines[n:n + n // 5], lines[n + n // 5:]
    paths = []
    for name, part in zip(('train', 'valid', 'test'), parts):
        paths.append(os.path.join(tmp, f'{name}.txt'))
        with open(paths[-1], 'w') as f:
            f.write('\n'.join(part) + '\n')
    return paths


# ---------------------------------------------------------------------- bench

def check_bench(report, backend, json_path, quick):
    out = os.path.splitext(os.path.abspath(json_path))[0] + '-bench.json'
    args = ['scripts/bench.py', '--json', out] + (['--tiny', '--blocks', '2'] if quick else
                                                  ['--iters', '10', '--blocks', '5'])
    r = run_script(args, backend.GPU)
    print(r.stdout, end='')
    if r.returncode != 0:
        report.add('bench', 'scripts/bench.py', False, support.last_line(r))
        return
    with open(out) as f:
        result = json.load(f)
    for part in ('train', 'eval', 'char'):
        med = result.get(part, {}).get('median_s', {})
        if 'ours' in med:
            ratio = med['ours'] / med['pytorch'] if 'pytorch' in med else None
            detail = ', '.join(f'{name} {1e3 * sec:.2f} ms/iter' for name, sec in med.items())
            detail += ''.join(f', ratio ours/{peer} {med["ours"] / med[peer]:.2f}'
                              for peer in ('pytorch', 'pytorch_fp32') if peer in med)
            report.add('bench', part, None, detail, ratio=ratio, median_s=med)
    report.add('bench', 'results', None, f'written to {out}')


# ----------------------------------------------------------------------- main

def environment(backend):
    info = support.machine(torch=True)
    env = {'machine': support.describe(info), 'python': info['python'], 'numpy': info['numpy'],
           'backend': backend.np.__name__}
    if backend.GPU:
        cp = backend.np
        env['cupy'] = cp.__version__
        try:
            props = cp.cuda.runtime.getDeviceProperties(cp.cuda.Device().id)
            env['device'] = props['name'].decode() if isinstance(props['name'], bytes) else str(props['name'])
            env['cuda_runtime'] = cp.cuda.runtime.runtimeGetVersion()
            env['driver'] = cp.cuda.runtime.driverGetVersion()
        except Exception as exc:  # the stand-in CuPy has no device properties
            env['device'] = f'unknown ({type(exc).__name__})'
    env['torch'] = info['torch']
    if info['torch'] is not None:
        import torch
        env['torch_cuda'] = torch.cuda.is_available()
    return env


def main(argv=None):
    p = ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--cpu', action='store_true', help='check the NumPy backend instead of CuPy')
    p.add_argument('--data-dir', default=os.environ.get('DLFS_DATA_DIR'),
                   help='folder with ptb/ptb.valid.txt and ptb/ptb.test.txt (default $DLFS_DATA_DIR)')
    p.add_argument('--json', default=os.path.join(ROOT, 'runs', 'gpu-check.json'),
                   help='write the results here (the record in docs/: --json docs/gpu-check.json)')
    p.add_argument('--skip', default='', help=f"comma-separated sections to skip, of {', '.join(SECTIONS)}")
    p.add_argument('--quick', action='store_true', help='small sizes: a smoke test of this script')
    p.add_argument('--iters', type=int, default=30, help='training iterations compared with NumPy')
    p.add_argument('--worker-train', help=argparse.SUPPRESS)
    p.add_argument('--worker-iters', type=int, help=argparse.SUPPRESS)
    p.add_argument('--worker-dtype', help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cfg = QUICK if args.quick else BOOK

    from common.run.cli import select_backend
    if args.worker_train:           # the NumPy side of the training comparison
        select_backend(False)
        print(json.dumps(train_curve(cfg, args.worker_iters, numpy.load(args.worker_train), args.worker_dtype)))
        return 0
    backend = select_backend(not args.cpu)
    skip = {s for s in args.skip.split(',') if s}
    unknown = skip - set(SECTIONS)
    if unknown:
        p.error(f"--skip: unknown section(s) {', '.join(sorted(unknown))}; choose from {', '.join(SECTIONS)}")
    report = Report()
    info = environment(backend)
    print('environment: ' + ', '.join(f'{k} {v}' for k, v in info.items()), flush=True)
    checks = {'gradcheck': lambda: check_gradients(report, backend),
              'oracle': lambda: check_oracle(report, backend),
              'graph': lambda: check_graph(report, backend, cfg, args.quick),
              'train': lambda: check_training(report, backend, cfg, args.data_dir, args.iters),
              'script': lambda: check_script(report, backend, args.data_dir, args.quick),
              'parallel': lambda: check_parallel(report, backend, args.data_dir, args.quick),
              'bench': lambda: check_bench(report, backend, args.json, args.quick)}
    started = time.time()
    for name in SECTIONS:
        if name in skip:
            continue
        try:
            checks[name]()
        except Exception as exc:   # a crash is a failed check, with its traceback for the fix
            traceback.print_exc()
            report.add(name, 'crashed', False, f'{type(exc).__name__}: {exc}'.splitlines()[0])
    result = {'environment': info, 'command': ' '.join(sys.argv), 'seconds': round(time.time() - started, 1),
              'checks': report.rows, 'failed': len(report.failed)}
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, 'w') as f:
        json.dump(result, f, indent=1, default=float)
    print(f"{len(report.rows)} checks, {len(report.failed)} failed; wrote {args.json}")
    return 1 if report.failed else 0


if __name__ == '__main__':
    sys.exit(main())
