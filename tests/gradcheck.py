"""Finite-difference gradient checking in float64."""
import numpy as np

from common.gradcheck import numerical_gradient  # noqa: F401  (the tests import it from here)


def assert_close(analytic, numeric, name='', rtol=1e-5, atol=1e-7):
    analytic = np.asarray(analytic, dtype=np.float64)
    scale = max(np.abs(numeric).max(), np.abs(analytic).max(), 1e-12)
    err = np.abs(analytic - numeric).max()
    assert err <= atol + rtol * scale, f'{name}: max abs error {err:.3g} (scale {scale:.3g})'


def check_layer(layer, inputs, rng, input_grad=True, backward_returns_tuple=False, **fwd_kwargs):
    """Check a layer's backward against finite differences of
    L = Σ forward(*inputs) ⊙ R for a fixed random R: every parameter, and the
    first input when ``input_grad``."""
    out = layer.forward(*inputs, **fwd_kwargs)
    R = rng.standard_normal(out.shape)

    def loss():
        return np.sum(layer.forward(*inputs, **fwd_kwargs) * R)

    loss()
    dx = layer.backward(R)
    if backward_returns_tuple:
        dx = dx[0]
    analytic = [g.copy() for g in layer.grads]
    for i, p in enumerate(layer.params):
        assert_close(analytic[i], numerical_gradient(loss, p), f'{type(layer).__name__} param {i}')
    if input_grad:
        assert_close(dx, numerical_gradient(loss, inputs[0]), f'{type(layer).__name__} input')


def check_model(model, loss, name=''):
    """Check ``model.backward()`` after ``loss()`` (which runs the model's
    forward and returns its loss) against finite differences of ``loss``
    for every parameter."""
    loss()
    model.backward()
    analytic = [g.copy() for g in model.grads]
    for i, p in enumerate(model.params):
        assert_close(analytic[i], numerical_gradient(loss, p), f'{name} param {i} {p.shape}')
