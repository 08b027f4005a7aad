"""A training script written the way the book's chapter scripts are, run by
tests/test_book_clients.py on NumPy and (``--gpu``) on the stand-in CuPy.
Arguments: a scratch directory to work in, optionally --gpu. Prints one JSON
line with what the test checks."""
import json
import os
import sys

from common import config
config.GPU = '--gpu' in sys.argv        # the book's switch, set before any other import
import matplotlib.pyplot as plt  # noqa: E402
import numpy  # noqa: E402

from common.np import *  # noqa: E402,F401,F403
from common import backend  # noqa: E402
from common.optimizer import SGD, AdaGrad, Adam, Momentum  # noqa: E402
from common.trainer import RnnlmTrainer  # noqa: E402
from common.util import eval_perplexity, to_cpu, to_gpu  # noqa: E402
from helpers.book_clients import PlainRnnLm, TiedLstmLm, step_difference  # noqa: E402

os.chdir(sys.argv[1])
out = {'backend': np.__name__}
backend.seed(0)
corpus = numpy.random.RandomState(1).randint(0, 30, 1200)     # host ids, as the book's loaders give
if config.GPU:
    corpus = to_gpu(corpus)
corpus_val = corpus[:400]
xs, ts = corpus[:-1], corpus[1:]

# chapter 5: a model that is no BaseModel and takes no train_flg
model = PlainRnnLm(30, 8, 8)
trainer = RnnlmTrainer(model, SGD(0.5))
trainer.fit(xs, ts, max_epoch=2, batch_size=4, time_size=5, eval_interval=10)
model.reset_state()
out['plain_ppl'] = eval_perplexity(model, corpus_val)
out['plain_train'] = trainer.ppl_list

# chapter 6: a tied model, clipping, plot, perplexity, saving with the default name
model = TiedLstmLm(30, 8, 8)
out['listed'] = len(model.params)
trainer = RnnlmTrainer(model, SGD(5.0))
trainer.fit(xs, ts, max_epoch=2, batch_size=4, time_size=5, max_grad=0.25, eval_interval=10)
trainer.plot(ylim=(0, 60))
out['ylim'] = list(plt.gca().get_ylim())
out['tied_train'] = trainer.ppl_list
model.reset_state()
out['tied_ppl'] = eval_perplexity(model, corpus_val)
model.save_params()
out['files'] = sorted(os.listdir('.'))
with open('TiedLstmLm.pkl', 'rb') as f:
    out['magic'] = f.read(2).decode('latin-1')

other = TiedLstmLm(30, 8, 8)
other.load_params()
probe = to_gpu(corpus_val[:10].reshape(2, 5))
model.reset_state()
scores = to_cpu(model.predict(probe))
out['loaded_predicts_same'] = bool((to_cpu(other.predict(probe)) == scores).all())
embed, affine = other.layers[0].params[0], other.layers[-1].params[0]
out['loaded_still_tied'] = bool((to_cpu(affine) == to_cpu(embed).T).all())

# the tied model listed twice against the framework's declaration, every optimizer
host_corpus = to_cpu(corpus)
for opt, lr in ((SGD, 1.0), (Momentum, 0.5), (AdaGrad, 0.1), (Adam, 0.01)):
    for max_grad in (None, 0.05):
        diff, moved, still_tied = step_difference(opt, lr, max_grad, host_corpus)
        out[f'{opt.__name__}_{max_grad}'] = [diff, moved, still_tied]
print(json.dumps(out))
