"""The GRU's elementwise arithmetic, fused per step.

Each function below is one step of TimeGRU's loop between two matrix
products. On NumPy it is a handful of in-place ufunc calls; on CuPy it is one
``ElementwiseKernel`` launch, so a GRU step costs two cuBLAS products and two
kernels instead of a dozen small launches. Arguments are all (N, H) views
(the (N, T, H) factors for :func:`gru_backward_factors`); results are written
into the arrays passed, nothing is allocated.

The kernel bodies are written in the common subset of CUDA C and Python
expressions (``exp``, ``tanh``, + − × /), one assignment per statement.
"""
from common.np import *  # noqa: F401,F403
from common import np as backend
from common.functions import sigmoid

# name: (inputs, outputs, body) of each fused step. Outputs may be read before
# they are written (in-place update).
KERNELS = {
    # z ← σ(z + hWz), r ← σ(r + hWr), rh ← r ⊙ h   (z, r hold x Wx + b on entry)
    'gru_forward_zr': ('T hWz, T hWr, T h', 'T z, T r, T rh',
                       'z = 1 / (1 + exp(-(z + hWz))); r = 1 / (1 + exp(-(r + hWr))); rh = r * h'),
    # h̃ ← tanh(h̃ + rhW), h' ← h + z ⊙ (h̃ − h)   (h̃ holds x Wxh + bh on entry)
    'gru_forward_h': ('T rhW, T z, T h', 'T hh, T h_next',
                      'hh = tanh(hh + rhW); h_next = h + z * (hh - h)'),
    # step-independent factors of the chain rule, for all steps at once
    'gru_backward_factors': ('T z, T r, T hh, T h_prev', 'T f_hh, T f_z, T f_r, T f_h',
                             'f_hh = z * (1 - hh * hh); f_z = (hh - h_prev) * z * (1 - z); '
                             'f_r = h_prev * r * (1 - r); f_h = 1 - z'),
    # dh ← dh + dh_out; dh̃_pre ← dh ⊙ f_hh; dz_pre ← dh ⊙ f_z
    'gru_backward_hz': ('T dh_out, T f_hh, T f_z', 'T dh, T dhh, T dz',
                        'dh = dh + dh_out; dhh = dh * f_hh; dz = dh * f_z'),
    # dr_pre ← drh ⊙ f_r; dh ← dh ⊙ f_h + drh ⊙ r   (the [dz | dr] Wzr^T term is added after)
    'gru_backward_r': ('T drh, T f_r, T f_h, T r', 'T dr, T dh',
                       'dr = drh * f_r; dh = dh * f_h + drh * r'),
}


# -- NumPy -----------------------------------------------------------------

def _forward_zr(zr, hW, h, rh):
    """zr: (N, 2H) block z | r; hW = h [Whz | Whr]; rh ← r ⊙ h."""
    zr += hW
    sigmoid(zr, out=zr)
    np.multiply(zr[:, h.shape[1]:], h, out=rh)


def _forward_h(hh, rhW, z, h, h_next):
    hh += rhW
    np.tanh(hh, out=hh)
    np.subtract(hh, h, out=h_next)
    h_next *= z
    h_next += h


def _backward_factors(z, r, hh, h_prev):
    f_hh = 1 - hh * hh
    f_hh *= z
    f_z = hh - h_prev
    f_z *= z
    f_z *= 1 - z
    f_r = h_prev * r
    f_r *= 1 - r
    return f_hh, f_z, f_r, 1 - z


def _backward_hz(dh_out, f_hh, f_z, dh, dhh, dz):
    dh += dh_out
    np.multiply(dh, f_hh, out=dhh)
    np.multiply(dh, f_z, out=dz)


def _backward_r(drh, f_r, f_h, r, dr, dh):
    np.multiply(drh, f_r, out=dr)
    dh *= f_h
    drh *= r            # drh is not needed after this step
    dh += drh


# -- CuPy --------------------------------------------------------------------

def _cupy_kernels():
    k = {name: np.ElementwiseKernel(i, o, body, name) for name, (i, o, body) in KERNELS.items()}

    def forward_zr(zr, hW, h, rh):
        H = h.shape[1]
        k['gru_forward_zr'](hW[:, :H], hW[:, H:], h, zr[:, :H], zr[:, H:], rh)

    def forward_h(hh, rhW, z, h, h_next):
        k['gru_forward_h'](rhW, z, h, hh, h_next)

    def backward_factors(z, r, hh, h_prev):
        f = [np.empty_like(h_prev) for _ in range(4)]
        k['gru_backward_factors'](z, r, hh, h_prev, *f)
        return tuple(f)

    def backward_hz(dh_out, f_hh, f_z, dh, dhh, dz):
        k['gru_backward_hz'](dh_out, f_hh, f_z, dh, dhh, dz)

    def backward_r(drh, f_r, f_h, r, dr, dh):
        k['gru_backward_r'](drh, f_r, f_h, r, dr, dh)

    return forward_zr, forward_h, backward_factors, backward_hz, backward_r


if backend.GPU and hasattr(np, 'ElementwiseKernel'):
    FUSED = True
    gru_forward_zr, gru_forward_h, gru_backward_factors, gru_backward_hz, gru_backward_r = _cupy_kernels()
else:
    FUSED = False
    gru_forward_zr, gru_forward_h = _forward_zr, _forward_h
    gru_backward_factors, gru_backward_hz, gru_backward_r = _backward_factors, _backward_hz, _backward_r
