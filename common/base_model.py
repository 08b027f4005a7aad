"""Base class of the models: parameter saving and loading."""
import numpy

from common.np import *  # noqa: F401,F403
from common import backend
from common.errors import CheckpointError
from common.run.fileio import load_npz, save_npz
from common.tying import unique_params

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
        more, e.g. how the text was turned into tokens."""
        file_name = file_name or self.default_file_name()
        save_npz(file_name, self.params_to_host(), self.params_meta(vocab, meta))
        return file_name

    def default_file_name(self):
        """``<ClassName>.pkl``, the name the book's scripts save to and load from."""
        return self.__class__.__name__ + '.pkl'

    def load_params(self, file_name=None):
        """Read parameters written by :meth:`save_params` into this model, in
        place (tied views stay tied). The file must hold parameters of the same
        shapes; otherwise :class:`CheckpointError` shows both models' options."""
        file_name = file_name or self.default_file_name()
        arrays, meta = load_npz(file_name, kind='parameter file')
        self.set_params_from_host(arrays, meta, source=file_name)

    def set_params_from_host(self, arrays, meta, source):
        params = unique_params(self.params)
        shapes = [tuple(s) for s in meta.get('shapes', [])]
        mine = [tuple(p.shape) for p in params]
        if shapes != mine:
            saved_config = meta.get('config') or {}
            if not (saved_config or self.config):     # models written the book's way have no options to show
                raise CheckpointError(f"{source} holds parameters of shapes {shapes} but this "
                                      f"{self.__class__.__name__} has {mine}: build the model with the sizes "
                                      f"it was saved with")
            saved = f"{meta.get('model')}({', '.join(f'{k}={v!r}' for k, v in saved_config.items())})"
            raise CheckpointError(f"{source} holds {saved} but this model is {self.describe()}: "
                                  f"build the model with the options it was saved with")
        for i, param in enumerate(params):
            key = f'param_{i:03d}'
            if key not in arrays or arrays[key].shape != param.shape:
                raise CheckpointError(f"{source} lacks a parameter array of shape {param.shape} ({key}): "
                                      f"the file is damaged; use an intact one")
            param[...] = backend.asarray(numpy.asarray(arrays[key], dtype=param.dtype))
