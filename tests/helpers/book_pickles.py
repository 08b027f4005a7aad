"""What the tests of the book's parameter pickles share: the book's own saving code,
the book's listing of a BetterRnnlm's parameters, and a pickle that would run a command."""
import os
import pickle

import numpy as np


def books_save(path, params, protocol=None):
    """The book's BaseModel.save_params on NumPy, line for line:
    ``pickle.dump([p.astype(np.float16) for p in params], f)`` (``protocol``
    None: pickle's default, as the book). Returns the path as a string."""
    params = [p.astype(np.float16) for p in params]
    with open(path, 'wb') as f:
        pickle.dump(params, f, protocol=protocol)
    return str(path)


def book_listing(model):
    """A framework BetterRnnlm's parameters as the book's BetterRnnlm lists them:
    embed_W, two LSTMs' Wx, Wh, b, then TimeAffine(embed_W.T, affine_b)'s two,
    so the tied weight twice."""
    return model.params[:7] + [model.params[0].T] + model.params[7:]


class RunsCommand:
    """Unpickled by ``pickle.load``, it runs ``touch marker``: the test sees
    whether anything ran by whether ``marker`` exists."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)
