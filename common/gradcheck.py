"""Gradient checking in float64, on arrays of either backend.

- :func:`numerical_gradient`: central differences of a scalar function;
- :func:`error_ratio` / :func:`assert_close`: the criterion, the largest
  difference as a fraction of ``atol + rtol · scale`` (at most 1 passes);
- :func:`layer_errors` / :func:`check_layer`, :func:`model_errors` /
  :func:`check_model`: a layer's or a model's backward against finite
  differences (the ``*_errors`` functions report, the ``check_*`` ones assert);
- :func:`gru_reference`, :func:`lstm_reference`: the recurrent cells'
  equations written out step by step, gate by gate, as an independent
  reference. They run on any array module with NumPy's spelling (NumPy,
  CuPy, or torch for autograd: pass ``xp``).

Analytic gradients may live on the device (CuPy): they are brought to the host
with :func:`common.backend.asnumpy` before they are compared.
"""
import numpy


def _asnumpy(x):
    """x on the host as float64 (imports the backend only for a device array)."""
    if isinstance(x, (numpy.ndarray, numpy.generic, float, int)):
        return numpy.asarray(x, dtype=numpy.float64)
    from common.backend import asnumpy
    return numpy.asarray(asnumpy(x), dtype=numpy.float64)


def _like(values, x):
    """The host array ``values`` as an array of the same kind as ``x``."""
    if isinstance(x, (numpy.ndarray, numpy.generic)):
        return values
    from common.backend import asarray
    return asarray(values)


def numerical_gradient(f, x, eps=1e-6):
    """Central differences of the scalar f() with respect to every element of
    the array ``x`` (NumPy or CuPy), which is perturbed in place and restored.
    Returns a NumPy float64 array of ``x``'s shape."""
    grad = numpy.zeros(x.shape)
    for i in numpy.ndindex(*x.shape):
        old = float(x[i])
        x[i] = old + eps
        fp = float(f())
        x[i] = old - eps
        fm = float(f())
        x[i] = old
        grad[i] = (fp - fm) / (2 * eps)
    return grad


# -- the criterion --------------------------------------------------------------

def _difference(analytic, numeric):
    analytic, numeric = _asnumpy(analytic), _asnumpy(numeric)
    scale = max(numpy.abs(numeric).max(), numpy.abs(analytic).max(), 1e-12)
    return float(numpy.abs(analytic - numeric).max()), float(scale)


def error_ratio(analytic, numeric, rtol=1e-5, atol=1e-7):
    """max |analytic − numeric| as a fraction of the tolerance atol + rtol ·
    scale (scale: the larger of the two arrays' largest magnitudes): at most
    1 passes."""
    err, scale = _difference(analytic, numeric)
    return err / (atol + rtol * scale)


def assert_close(analytic, numeric, name='', rtol=1e-5, atol=1e-7):
    """Assert :func:`error_ratio` ≤ 1, naming the array and the error."""
    err, scale = _difference(analytic, numeric)
    assert err <= atol + rtol * scale, f'{name}: max abs error {err:.3g} (scale {scale:.3g})'


# -- layers and models ------------------------------------------------------------

def layer_errors(layer, inputs, rng, input_grad=True, backward_returns_tuple=False, before=None, **fwd_kwargs):
    """``[(name, error_ratio)]`` of a layer's backward against finite
    differences of L = Σ forward(*inputs) ⊙ R for a fixed random R: every
    parameter, and the first input when ``input_grad``. ``before()``, when
    given, runs before every forward (e.g. to set a carried state)."""
    def forward():
        if before:
            before()
        return layer.forward(*inputs, **fwd_kwargs)

    out = forward()
    R = _like(rng.standard_normal(out.shape), out)

    def loss():
        return (forward() * R).sum()

    loss()
    dx = layer.backward(R)
    if backward_returns_tuple:
        dx = dx[0]
    analytic = [g.copy() for g in layer.grads]
    kind = type(layer).__name__
    errors = [(f'{kind} param {i}', error_ratio(analytic[i], numerical_gradient(loss, p)))
              for i, p in enumerate(layer.params)]
    if input_grad:
        errors.append((f'{kind} input', error_ratio(dx, numerical_gradient(loss, inputs[0]))))
    return errors


def layer_error(layer, inputs, rng, **kwargs):
    """The worst :func:`error_ratio` of :func:`layer_errors`."""
    return max(err for _, err in layer_errors(layer, inputs, rng, **kwargs))


def check_layer(layer, inputs, rng, input_grad=True, backward_returns_tuple=False, **fwd_kwargs):
    """Assert that every gradient of :func:`layer_errors` passes."""
    for name, err in layer_errors(layer, inputs, rng, input_grad, backward_returns_tuple, **fwd_kwargs):
        assert err <= 1, f'{name}: error {err:.3g} of the tolerance'


def model_errors(model, loss, name=''):
    """``[(name, error_ratio)]`` of ``model.backward()`` after ``loss()``
    (which runs the model's forward and returns its loss) against finite
    differences of ``loss``, for every parameter."""
    loss()
    model.backward()
    analytic = [g.copy() for g in model.grads]
    return [(f'{name} param {i} {p.shape}', error_ratio(analytic[i], numerical_gradient(loss, p)))
            for i, p in enumerate(model.params)]


def model_error(model, loss):
    """The worst :func:`error_ratio` of :func:`model_errors`."""
    return max(err for _, err in model_errors(model, loss))


def check_model(model, loss, name=''):
    """Assert that every gradient of :func:`model_errors` passes."""
    for what, err in model_errors(model, loss, name):
        assert err <= 1, f'{what}: error {err:.3g} of the tolerance'


# -- independent references --------------------------------------------------------

def sigmoid(x, xp=numpy):
    return 1 / (1 + xp.exp(-x))


def gru_reference(xs, Wx, Wh, b, h0=None, xp=numpy):
    """The GRU of :class:`common.time_layers.TimeGRU` (the book's form: z = σ(x Wxz + h Whz + bz),
    r = σ(x Wxr + h Whr + br), h̃ = tanh(x Wxh + (r ⊙ h) Whh + bh), h' = (1 − z) ⊙ h + z ⊙ h̃),
    written out one step at a time, one gate at a time:
    the hidden states (N, T, H) for inputs (N, T, D) and gate blocks z | r | h."""
    N, T, D = xs.shape
    H = Wh.shape[0]
    Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Whz, Whr, Whh = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    bz, br, bh = b[:H], b[H:2 * H], b[2 * H:]
    h = xp.zeros((N, H)) if h0 is None else h0
    out = []
    for t in range(T):
        x = xs[:, t]
        z = sigmoid(x @ Wxz + h @ Whz + bz, xp)
        r = sigmoid(x @ Wxr + h @ Whr + br, xp)
        h_hat = xp.tanh(x @ Wxh + (r * h) @ Whh + bh)
        h = (1 - z) * h + z * h_hat
        out.append(h)
    return xp.stack(out, axis=1)


def lstm_reference(xs, Wx, Wh, b, h0=None, c0=None, xp=numpy):
    """The book's LSTM (gate blocks f | g | i | o), one step at a time."""
    N, T, D = xs.shape
    H = Wh.shape[0]
    h = xp.zeros((N, H)) if h0 is None else h0
    c = xp.zeros((N, H)) if c0 is None else c0
    out = []
    for t in range(T):
        a = xs[:, t] @ Wx + h @ Wh + b
        f, g = sigmoid(a[:, :H], xp), xp.tanh(a[:, H:2 * H])
        i, o = sigmoid(a[:, 2 * H:3 * H], xp), sigmoid(a[:, 3 * H:], xp)
        c = f * c + g * i
        h = o * xp.tanh(c)
        out.append(h)
    return xp.stack(out, axis=1)
