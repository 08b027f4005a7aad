"""Training and evaluation steps as CUDA graphs (common/cuda/graph.py), on the
stand-in CuPy, which records what a capture records, restores what a device
would not have computed, refuses what CuPy refuses during capture and
replays the nodes at each launch (tests/fake_cupy). Each test compares the
graph path with the eager path of the same run."""
import json
import os

from helpers.processes import run_python

COMMON = r'''
import json, numpy, cupy
from common import backend
from common.trainer import RnnlmTrainer
from common.optimizer import SGD, Adam, Momentum, ASGD
from common.run.parts import Part
from common.util import eval_perplexity
from ch_gru.rnnlm import Rnnlm

V = 23
corpus = numpy.random.default_rng(0).integers(0, V, 400)

def model(cell='gru', dtype='float64', **kw):
    numpy.random.seed(3)
    return Rnnlm(V, 8, 8, num_layers=2, dropout_ratio=0.3, cell=cell, dtype=dtype, **kw)

class Masks(Part):
    def __init__(self): self.seen = []
    def iteration(self, trainer): self.seen.append(trainer.model.dropouts[1].mask.get())

def train(graph, opt=None, epochs=2, between=None, max_grad=0.25, parts=(), trainer_class=RnnlmTrainer, **kw):
    m = model(**kw)
    t = trainer_class(m, opt or SGD(1.0), parts=list(parts), cuda_graph=graph)
    curve = []
    for e in range(epochs):
        t.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=6, max_grad=max_grad, eval_interval=1)
        curve += t.ppl_list
        if between:
            between(m, t, e)
    return m, t, curve

def rel(a, b):
    a, b = numpy.asarray(a), numpy.asarray(b)
    return float(abs(a - b).max() / abs(b).max())
'''


def run_fake(code, **env):
    r = run_python(COMMON + code, {'DLFS_GPU': '1', **env}, fake_cupy=True)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout.strip().splitlines()[-1]), r


def test_graph_training_curve_equals_eager_in_float64():
    """GRU, LSTM and RNN, dropout, clipping, tying, SGD and Adam: the graph
    path's per-iteration perplexities are the eager path's to 1e-12, and one
    graph was captured per batch shape."""
    out, r = run_fake(r'''
res = {}
for cell in ('gru', 'lstm', 'rnn'):
    for name, make in (('sgd', lambda: SGD(1.0)), ('adam', lambda: Adam(0.01))):
        _, _, eager = train(False, make(), cell=cell)
        _, t, graph = train(True, make(), cell=cell)
        res[f'{cell} {name}'] = [rel(graph, eager), t.graphs.captures, len(graph)]
print(json.dumps(res))
''')
    for case, (err, captures, n) in out.items():
        assert err < 1e-12 and captures == 1 and n == 2 * 16, (case, err, captures, n)
    assert 'note:' not in r.stdout


def test_graph_regularised_recipe_equals_eager():
    """Locked dropout, weight drop (the layer computes with a new Wh ⊙ M every
    step), embedding dropout, AR and TAR: graph replays equal eager."""
    out, r = run_fake(r'''
reg = dict(locked_dropout=True, weight_drop=0.3, embed_dropout=0.1, ar_alpha=1.0, tar_beta=1.0)
res = {}
for cell in ('gru', 'lstm'):
    _, _, eager = train(False, cell=cell, **reg)
    _, t, graph = train(True, cell=cell, **reg)
    res[cell] = [rel(graph, eager), t.graphs.captures]
print(json.dumps(res))
''')
    assert all(err < 1e-12 and captures == 1 for err, captures in out.values()), out
    assert 'note:' not in r.stdout


def test_graph_reset_after_gru_and_weight_decay():
    out, _ = run_fake(r'''
_, _, eager = train(False, SGD(0.5, weight_decay=1e-3), reset_after=True)
_, t, graph = train(True, SGD(0.5, weight_decay=1e-3), reset_after=True)
print(json.dumps([rel(graph, eager), t.graphs.captures]))
''')
    assert out[0] < 1e-12 and out[1] == 1, out


def test_graph_learning_rate_change_takes_effect():
    """lr is a device scalar the host fills before each launch: dividing it
    between epochs changes the replayed update exactly as it changes the eager one,
    and a run that keeps lr differs."""
    out, _ = run_fake(r'''
def slower(m, t, e): t.optimizer.lr /= 8
_, _, eager = train(False, between=slower)
_, _, graph = train(True, between=slower)
_, _, kept = train(True)
print(json.dumps([rel(graph, eager), rel(kept[16:], eager[16:])]))
''')
    assert out[0] < 1e-12 and out[1] > 1e-6, out


def test_graph_state_carries_across_replays_and_reset_state_works():
    """The carried hidden state lives in fixed arrays the graph writes: a run
    whose state carries equals eager; reset_state (and set_state) between
    launches reach the graph; a run that resets differs from one that carries."""
    out, _ = run_fake(r'''
def reset(m, t, e): m.reset_state()
def restore(m, t, e):
    state = m.get_state(); m.set_state([tuple(s.copy() * 0.5 for s in layer) for layer in state])
res = {}
for cell in ('gru', 'lstm'):
    for name, between in (('reset', reset), ('set', restore)):
        _, _, eager = train(False, epochs=3, between=between, cell=cell)
        _, _, graph = train(True, epochs=3, between=between, cell=cell)
        res[f'{cell} {name}'] = rel(graph, eager)
_, _, carried = train(True, epochs=3)
_, _, reset_run = train(True, epochs=3, between=reset)
res['reset changes the run'] = rel(reset_run[16:], carried[16:])
print(json.dumps(res))
''')
    assert out.pop('reset changes the run') > 1e-6, out
    assert all(err < 1e-12 for err in out.values()), out


def test_graph_dropout_masks_differ_between_replays_and_match_eager():
    out, _ = run_fake(r'''
me, mg = Masks(), Masks()
train(False, parts=[me], epochs=1)
train(True, parts=[mg], epochs=1)
replays = mg.seen[2:6]
differ = all(not numpy.array_equal(a, b) for a, b in zip(replays, replays[1:]))
same = all(numpy.array_equal(a, b) for a, b in zip(me.seen, mg.seen))
print(json.dumps([differ, same, len(mg.seen)]))
''')
    assert out == [True, True, 16], out


def test_graph_evaluation_equals_eager_and_replays():
    out, _ = run_fake(r'''
from common import config
from common.cuda import graph as cuda_graph
m = model()
config.CUDA_GRAPH = False
eager = [eval_perplexity(m, corpus, batch_size=3, time_size=5) for _ in range(2)]
m.reset_state()
config.CUDA_GRAPH = True
graph = [eval_perplexity(m, corpus, batch_size=3, time_size=5) for _ in range(2)]
g, = cuda_graph._FORWARDS[m].values()
print(json.dumps([rel(graph, eager), g.captures, len(g.graphs), list(g.graphs.values())[0].node_count() > 10]))
''')
    assert out[0] < 1e-12 and out[1] == 1 and out[2] == 1 and out[3], out


def test_graph_generation_samples_what_eager_samples():
    """Generation's forward steps (the prime, then one token at a time) as
    graphs: the same ids as eager, one graph for the T = 1 step and one for the
    prime, whose shape came twice."""
    out, _ = run_fake(r'''
from common import config
from common.cuda import graph as cuda_graph
from ch_gru.generate import generate_ids
m = model(dtype='float32')
ids = {}
for on in (False, True):
    config.CUDA_GRAPH = on
    ids[on] = [generate_ids(m, [1, 2, 3], 30, numpy.random.default_rng(s), top_k=5) for s in (0, 1)]
g = cuda_graph._FORWARDS[m]['generation']
print(json.dumps([ids[True] == ids[False], g.captures, sorted(map(str, g.graphs)), len(ids[True][0])]))
''')
    assert out == [True, 2, ['((1, 1),)', '((1, 3),)'], 30], out


def test_graph_count_is_capped_and_further_shapes_run_eagerly():
    out, _ = run_fake(r'''
from common import config
from common.cuda import graph as cuda_graph
cuda_graph.MAX_GRAPHS = 2
m = model()
config.CUDA_GRAPH = False
eager = [eval_perplexity(m, corpus, batch_size=3, time_size=t) for t in (3, 4, 5) for _ in range(2)]
config.CUDA_GRAPH = True
m.reset_state()
graph = [eval_perplexity(m, corpus, batch_size=3, time_size=t) for t in (3, 4, 5) for _ in range(2)]
g, = cuda_graph._FORWARDS[m].values()
print(json.dumps([rel(graph, eager), len(g.graphs)]))
''')
    assert out[0] < 1e-12 and out[1] == 2, out


def test_graph_reports_host_bound_gradient_steps_once_and_runs_eagerly():
    """A gradient step that reads the host cannot be captured: one note line,
    then the eager step, with the eager numbers."""
    out, r = run_fake(r'''
class HostStep:
    def __call__(self, trainer): float(trainer.model.grads[0].sum())
def run(graph):
    m = model(); t = RnnlmTrainer(m, SGD(1.0), parts=[], grad_steps=[HostStep()], cuda_graph=graph)
    t.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=6, max_grad=0.25, eval_interval=1)
    return t
eager, graph = run(False), run(True)
print(json.dumps([rel(graph.ppl_list, eager.ppl_list), graph.graphs.captures, graph.graphs.off]))
''')
    assert out[0] < 1e-12 and out[1] == 0 and 'HostStep' in out[2], out
    notes = [line for line in r.stdout.splitlines() if line.startswith('note:')]
    assert len(notes) == 1 and 'HostStep' in notes[0] and '--no-cuda-graph' in notes[0], notes


def test_graph_capture_refused_midway_falls_back_with_one_note():
    """A model whose forward reads the host (a refusal CuPy raises during
    capture) loses nothing: the capture is abandoned, the state arrays are
    put back, and the run goes on eagerly with the eager numbers."""
    out, r = run_fake(r'''
class Peeking(Rnnlm):
    def forward(self, xs, ts, train_flg=True):
        loss = super().forward(xs, ts, train_flg)
        self.peeked = float(loss)
        return loss
def run(graph):
    numpy.random.seed(3)
    m = Peeking(V, 8, 8, dropout_ratio=0.3, dtype='float64')
    t = RnnlmTrainer(m, SGD(1.0), parts=[], cuda_graph=graph)
    t.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=6, max_grad=0.25, eval_interval=1)
    return t
eager, graph = run(False), run(True)
print(json.dumps([rel(graph.ppl_list, eager.ppl_list), graph.graphs.captures, graph.graphs.off]))
''')
    assert out[0] < 1e-12 and out[1] == 0 and 'RuntimeError' in out[2], out
    assert sum(line.startswith('note: CUDA graphs off for training') for line in r.stdout.splitlines()) == 1


def test_graph_momentum_update_runs_eagerly_after_the_graph():
    """An optimizer without the scalars/apply split keeps its update on the
    host side of the launch; the forward and backward are still one graph."""
    out, _ = run_fake(r'''
_, _, eager = train(False, Momentum(0.5))
_, t, graph = train(True, Momentum(0.5))
print(json.dumps([rel(graph, eager), t.graphs.captures]))
''')
    assert out[0] < 1e-12 and out[1] == 1, out


def test_graph_asgd_recaptures_without_the_update_once_averaging_starts():
    out, _ = run_fake(r'''
def start(m, t, e):
    if e == 0: t.optimizer.start()
_, _, eager = train(False, ASGD(1.0), epochs=3, between=start)
_, t, graph = train(True, ASGD(1.0), epochs=3, between=start)
print(json.dumps([rel(graph, eager), t.graphs.captures, sorted(k[2] for k in t.graphs.graphs)]))
''')
    assert out[0] < 1e-12 and out[1] == 2 and out[2] == [False, True], out


def test_graph_variable_bptt_captures_one_graph_per_window_length():
    out, _ = run_fake(r'''
from common.batching.variable_bptt import VariableBpttTrainer
_, _, eager = train(False, trainer_class=VariableBpttTrainer, epochs=2)
_, t, graph = train(True, trainer_class=VariableBpttTrainer, epochs=2)
lengths = set(int(n) for n in t.lengths)
print(json.dumps([rel(graph, eager), t.graphs.captures, len(t.graphs.graphs) <= len(lengths) + 1]))
''')
    assert out[0] < 1e-12 and out[1] >= 1 and out[2], out


def test_graph_keys_on_the_clipping_norm_and_baked_hyperparameters():
    """A second fit with another max_grad, or SGD's weight decay changed, gets
    a graph of its own instead of replaying the old settings."""
    out, _ = run_fake(r'''
def change(m, t, e):
    t.optimizer.weight_decay = 1e-2
def run(graph):
    m = model(); t = RnnlmTrainer(m, SGD(1.0), parts=[], cuda_graph=graph)
    curve = []
    for max_grad in (0.25, 0.05, None):
        t.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=6, max_grad=max_grad, eval_interval=1)
        curve += t.ppl_list
    change(m, t, 0)
    t.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=6, max_grad=0.25, eval_interval=1)
    return curve + t.ppl_list, t
eager, _ = run(False)
graph, t = run(True)
print(json.dumps([rel(graph, eager), t.graphs.captures]))
''')
    assert out[0] < 1e-12 and out[1] == 4, out


def test_graph_recaptures_when_the_parameters_are_replaced():
    """The graph bakes in the parameter arrays; a model whose arrays were
    swapped for new ones is captured again instead of updating the old ones."""
    out, _ = run_fake(r'''
def swap(m, t, e):
    m.params[-1] = m.params[-1].copy(); m.affine.params[1] = m.params[-1]
_, _, eager = train(False, between=swap, epochs=2)
_, t, graph = train(True, between=swap, epochs=2)
print(json.dumps([rel(graph, eager), t.graphs.captures]))
''')
    assert out[0] < 1e-12 and out[1] == 2, out


def test_train_script_gpu_graph_and_no_cuda_graph_end_alike(shared_data, tmp_path):
    """scripts/train_better_rnnlm.py --gpu (graphs on by default) and --gpu
    --no-cuda-graph, float64, on a slice of the real PTB: the same end line."""
    script = os.path.join('scripts', 'train_better_rnnlm.py')
    ptb = os.path.join(shared_data, 'ptb')
    common = ['--gpu', '--train-file', os.path.join(ptb, 'ptb.valid.txt'), '--valid-file', os.path.join(ptb, 'ptb.test.txt'),
              '--test-file', os.path.join(ptb, 'ptb.test.txt'), '--dtype', 'float64', '--max-epoch', '1', '--batch-size', '4',
              '--time-size', '5', '--wordvec-size', '16', '--hidden-size', '16', '--max-train-tokens', '1500',
              '--max-eval-tokens', '400', '--eval-interval', '10', '--seed', '1']
    ends = []
    for extra in ([], ['--no-cuda-graph']):
        r = run_python(script, {'DLFS_GPU': '1'}, *common, *extra, '--out-dir', str(tmp_path / str(len(extra))),
                       fake_cupy=True)
        assert r.returncode == 0, r.stderr
        assert 'note:' not in r.stdout, r.stdout
        ends.append([line for line in r.stdout.splitlines() if line.startswith('| end |')])
    assert ends[0] == ends[1] and ends[0], ends


def test_graph_path_without_nvmath_says_so_once_and_runs_eagerly():
    """A GPU machine without nvmath-python loses nothing: one note with the
    install command, and the eager path's numbers."""
    out, r = run_fake(r'''
import sys
_, _, eager = train(False)
sys.modules['nvmath'] = None
_, t, graph = train(True)
print(json.dumps([rel(graph, eager), t.graphs.captures, backend._gemm is None]))
''')
    assert out == [0.0, 0, True], out
    notes = [line for line in r.stdout.splitlines() if line.startswith('note:')]
    assert len(notes) == 1 and 'nvmath-python' in notes[0] and 'pip install nvmath-python' in notes[0], notes
