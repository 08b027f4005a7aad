"""Base class of the models: parameter saving and loading."""
import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.errors import CheckpointError
from common.run import book_pickle
from common.run.fileio import load_npz, save_npz
from common.tying import find_shared, unique_params

PARAMS_FORMAT = 'dlfs-params-1'


class BaseModel:
    """A model holds ``params`` and ``grads`` (each parameter listed once, tied
    weights included) and a ``config`` dict of the options it was built with.

    Models written the book's way work too: they skip ``__init__`` (no
    ``config``, taken as empty) and may list a tied weight twice, as ``W`` and
    ``W.T``; saving and loading count such a weight once, and training merges
    it (:func:`common.tying.merge_shared_params`)."""

    config = None           # the book's models never set it

    def __init__(self):
        self.params, self.grads = None, None
        self.config = {}

    def forward(self, *args):
        raise NotImplementedError

    def backward(self, *args):
        raise NotImplementedError

    def describe(self):
        """``Name(option=value, ...)``: what the model was built with."""
        opts = ', '.join(f'{k}={v!r}' for k, v in (self.config or {}).items())
        return f'{self.__class__.__name__}({opts})'

    def param_count(self):
        return int(sum(p.size for p in unique_params(self.params)))

    def params_to_host(self):
        """name -> NumPy copy of each parameter, in ``params`` order (a tied
        weight listed twice, once)."""
        return {f'param_{i:03d}': backend.asnumpy(p) for i, p in enumerate(unique_params(self.params))}

    def params_meta(self, vocab=None, extra=None):
        meta = {'format': PARAMS_FORMAT, 'model': self.__class__.__name__, 'config': dict(self.config or {}),
                'shapes': [list(p.shape) for p in unique_params(self.params)]}
        if vocab is not None:
            meta['vocab'] = list(vocab)
        for key, value in (extra or {}).items():
            meta.setdefault(key, value)        # never overrides what describes the parameters
        return meta

    def save_params(self, file_name=None, vocab=None, meta=None):
        """Write the parameters to ``file_name`` (default ``<ClassName>.pkl``,
        the book's name; the content is an .npz archive, never a pickle),
        atomically, as float arrays plus the model's name, options and shapes,
        and ``vocab`` (the tokens in id order) when given, so that the file
        alone is enough to rebuild the model and read its output
        (:func:`ch_gru.rnnlm.load_model`). ``meta`` (a JSON-able dict) adds
        more, e.g. how the text was turned into tokens. The book's scripts
        read it back with :meth:`load_params` under the same name; the
        book's float16 pickles are read there too, but never written."""
        file_name = file_name or self.default_file_name()
        save_npz(file_name, self.params_to_host(), self.params_meta(vocab, meta))
        return file_name

    def default_file_name(self):
        """``<ClassName>.pkl``, the name the book's scripts save to and load from."""
        return self.__class__.__name__ + '.pkl'

    def load_params(self, file_name=None):
        """Read parameters into this model, in place (tied views stay tied):
        a file :meth:`save_params` wrote, or a pickle the book's own
        ``save_params`` wrote (float16, read by :mod:`common.run.book_pickle`
        without running code, see :meth:`set_params_from_book`). The file
        must hold parameters of the same shapes; otherwise
        :class:`CheckpointError` shows both models' options or shapes."""
        file_name = file_name or self.default_file_name()
        if book_pickle.is_pickle(file_name):
            self.set_params_from_book(book_pickle.load(file_name), source=file_name)
            return
        arrays, meta = load_npz(file_name, kind='parameter file')
        self.set_params_from_host(arrays, meta, source=file_name)

    def set_params_from_book(self, arrays, source):
        """The book's ``load_params``: entry i of the book's list of arrays
        into ``params[i]``, converted to the parameter's dtype and put on the
        backend's device. A tied weight may be listed twice on either side,
        as ``W`` and ``W.T``: the book's models list it twice and so do their
        files, the framework's models (and the book's after
        ``RnnlmTrainer.fit``) once. Both entries of a file must then hold the
        same values."""
        for param, array in book_pairs(self.params, arrays, source, self.__class__.__name__):
            param[...] = backend.asarray(numpy.asarray(array, dtype=param.dtype))

    def set_params_from_host(self, arrays, meta, source):
        params = unique_params(self.params)
        shapes = [tuple(s) for s in meta.get('shapes', [])]
        mine = [tuple(p.shape) for p in params]
        if shapes != mine:
            saved_config = meta.get('config') or {}
            if not (saved_config or self.config):     # models written the book's way have no options to show
                raise shape_error(source, shapes, mine, self.__class__.__name__)
            saved = f"{meta.get('model')}({', '.join(f'{k}={v!r}' for k, v in saved_config.items())})"
            raise CheckpointError(f"{source} holds {saved} but this model is {self.describe()}: "
                                  f"build the model with the options it was saved with")
        for i, param in enumerate(params):
            key = f'param_{i:03d}'
            if key not in arrays or arrays[key].shape != param.shape:
                raise CheckpointError(f"{source} lacks a parameter array of shape {param.shape} ({key}): "
                                      f"the file is damaged; use an intact one")
            param[...] = backend.asarray(numpy.asarray(arrays[key], dtype=param.dtype))


def shape_error(source, shapes, mine, name):
    return CheckpointError(f"{source} holds parameters of shapes {shapes} but this {name} has {mine}: "
                           f"build the model with the sizes it was saved with")


def book_pairs(params, arrays, source, name):
    """(parameter, array) for every parameter: the book's entry-by-entry rule
    when the listings have the same shapes, else the arrays in order against
    the parameters each listed once, an array that repeats an earlier one
    (the tied weight, possibly transposed) skipped. The entries of one tied
    weight must agree. :class:`CheckpointError` when the file does not fit."""
    shapes, mine = [tuple(a.shape) for a in arrays], [tuple(p.shape) for p in params]
    if shapes == mine:
        pairs = list(zip(params, arrays))
        for j, (i, transposed) in find_shared(params).items():
            if not numpy.array_equal(arrays[j], arrays[i].T if transposed else arrays[i]):
                raise CheckpointError(f"{source}: entries {i} and {j} should hold one tied weight of this {name} "
                                      f"but differ: the file is of a model without weight tying; load it "
                                      f"into one built like that")
        return pairs
    kept, pairs = unique_params(params), []
    for a in arrays:
        if len(pairs) < len(kept) and a.shape == kept[len(pairs)].shape:
            pairs.append((kept[len(pairs)], a))
        elif not any(repeats(a, b) for _, b in pairs):
            raise shape_error(source, shapes, mine, name)
    if len(pairs) != len(kept):
        raise shape_error(source, shapes, mine, name)
    return pairs


def repeats(a, b):
    """True when array ``a`` holds what ``b`` holds, as it is or transposed."""
    return (a.shape == b.shape and numpy.array_equal(a, b)) or \
        (a.ndim == 2 and a.shape == b.shape[::-1] and numpy.array_equal(a, b.T))
