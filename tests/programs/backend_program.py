"""Runs the framework end to end on whatever backend DLFS_GPU selects and
prints a JSON summary; tests/test_backend.py runs it on NumPy and on the
stand-in CuPy and compares. Arguments: a scratch directory."""
import json
import sys

import numpy

from common import backend
from common.optimizer import Adam, SGD
from common.trainer import RnnlmTrainer
from common.util import eval_perplexity, to_cpu, to_gpu
from ch_gru.better_rnnlm import BetterRnnlm

tmp = sys.argv[1]
backend.seed(0)
corpus = numpy.random.RandomState(1).randint(0, 30, 2000).astype(numpy.int32)   # host ids, as loaders give
out = {'backend': backend.np.__name__}
for cell in ('gru', 'lstm'):
    model = BetterRnnlm(vocab_size=30, wordvec_size=8, hidden_size=8, cell=cell)
    trainer = RnnlmTrainer(model, SGD(5.0))
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=2, batch_size=4, time_size=5, max_grad=0.25,
                eval_interval=10)
    model.reset_state()
    out[cell + '_ppl'] = eval_perplexity(model, corpus[:300], batch_size=3, time_size=5)
    out[cell + '_train'] = trainer.ppl_list
    out[cell + '_params'] = [float(to_cpu(p).astype(numpy.float64).sum()) for p in model.params]
    path = model.save_params(f'{tmp}/{cell}.npz')
    other = BetterRnnlm(vocab_size=30, wordvec_size=8, hidden_size=8, cell=cell)
    other.load_params(path)
    xs = to_gpu(corpus[:10].reshape(2, 5))
    out[cell + '_predict'] = to_cpu(other.predict(xs)).astype(numpy.float64).sum().item()
    out[cell + '_predict_host_ids'] = to_cpu(other.predict(corpus[:10].reshape(2, 5))).sum().item()
    Adam(0.01).update(model.params, model.grads)
# The AWD-LSTM pieces: every regulariser, NT-ASGD (triggered at once) and variable BPTT, with each cell.
from ch_gru.rnnlm import Rnnlm
from common.optimizer import ASGD
from common.batching.variable_bptt import VariableBpttTrainer
for cell in ('gru', 'lstm', 'rnn'):
    model = Rnnlm(30, 8, 8, cell=cell, locked_dropout=True, dropout_input=0.3, dropout_hidden=0.2,
                  dropout_output=0.3, embed_dropout=0.1, weight_drop=0.4, ar_alpha=2.0, tar_beta=1.0)
    opt = ASGD(2.0, nonmono=1)
    for check in (1.0, 0.5, 2.0):
        opt.observe(check)
    trainer = VariableBpttTrainer(model, opt, parts=[], seed=3)
    trainer.fit(corpus[:-1], corpus[1:], max_epoch=1, batch_size=4, time_size=8, max_grad=0.25, eval_interval=10)
    with opt.averaged(model.params):
        model.reset_state()
        out[cell + '_awd_ppl'] = eval_perplexity(model, corpus[:300], batch_size=3, time_size=5)
    out[cell + '_awd_train'] = trainer.ppl_list
    out[cell + '_awd_avg'] = [float(to_cpu(a).astype(numpy.float64).sum()) for a in opt.avg]
print(json.dumps(out))
