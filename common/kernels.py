"""The GRU's elementwise arithmetic, fused per step.

Each function below is one step of TimeGRU's loop between two matrix
products. On NumPy it is a handful of in-place ufunc calls; on CuPy it is one
``ElementwiseKernel`` launch, so a GRU step costs two cuBLAS products and two
kernels instead of a dozen small launches. Arguments are (N, H) or (N, 2H)
views; results are written into the arrays passed, nothing is allocated.

The kernel bodies are written in the common subset of CUDA C and Python
expressions (``exp``, ``tanh``, + − × /), one assignment per statement.
"""
from common.np import *  # noqa: F401,F403
from common import backend
from common.functions import sigmoid

# name: (inputs, outputs, body) of each fused step. Outputs may be read before
# they are written (in-place update). No input may share memory bounds with an
# output: CuPy would copy such an input before every launch. The extra
# outputs (rh, h_next, dhh_c, dz_c, dr_c) are contiguous (N, H) buffers that
# the next matrix product reads: CuPy copies a strided operand before cuBLAS.
KERNELS = {
    # z ← σ(z + hWz), r ← σ(r + hWr) (also into hWz, hWr), rh ← r ⊙ h
    # (z, r hold x Wx + b on entry)
    'gru_forward_zr': ('T h', 'T hWz, T hWr, T z, T r, T rhs, T rh',
                       'z = 1 / (1 + exp(-(z + hWz))); r = 1 / (1 + exp(-(r + hWr))); '
                       'hWz = z; hWr = r; rhs = r * h; rh = rhs'),
    # h̃ ← tanh(h̃ + rhW), h' ← h + z ⊙ (h̃ − h)   (h̃ holds x Wxh + bh on entry)
    'gru_forward_h': ('T rhW, T z, T h', 'T hh, T hs, T h_next',
                      'hh = tanh(hh + rhW); h_next = h + z * (hh - h); hs = h_next'),
    # dh ← dh + dh_out;  dh̃_pre = dh ⊙ z ⊙ (1 − h̃²);  dz_pre = dh ⊙ (h̃ − h) ⊙ z ⊙ (1 − z)
    'gru_backward_hz': ('T dh_out, T z, T hh, T h_prev', 'T dh, T dhh, T dz, T dhh_c, T dz_c',
                        'dh = dh + dh_out; dhh = dh * z * (1 - hh * hh); '
                        'dz = dh * (hh - h_prev) * z * (1 - z); dhh_c = dhh; dz_c = dz'),
    # dr_pre = drh ⊙ h ⊙ r ⊙ (1 − r);  dh ← dh ⊙ (1 − z) + drh ⊙ r
    # (the [dz_pre | dr_pre] [Whz | Whr]^T term is added after)
    'gru_backward_r': ('T drh, T z, T r, T h_prev', 'T dr, T dh, T dr_c',
                       'dr = drh * h_prev * r * (1 - r); dh = dh * (1 - z) + drh * r; dr_c = dr'),
}


# -- NumPy -----------------------------------------------------------------
# Measured on the book-size model and a char model: elementwise work on small
# contiguous arrays that stay in cache beats both strided in-place updates of
# G and large whole-sequence passes. So the forward steps compute in the
# contiguous product buffer and copy the gate values into G once, and the
# backward steps use two (N, H) scratch buffers instead of allocating.

def _forward_zr(g_zr, hW, h, rhs, rh):
    """hW = h [Whz | Whr] on entry; becomes z | r, which is also stored in
    g_zr (x Wx{z,r} + b on entry); rh = rhs = r ⊙ h. Returns z."""
    hW += g_zr
    sigmoid(hW, out=hW)
    g_zr[...] = hW
    H = h.shape[1]
    np.multiply(hW[:, H:], h, out=rh)
    rhs[...] = rh
    return hW[:, :H]


def _forward_h(g_hh, rhW, z, h, hs, h_next):
    """rhW = (r ⊙ h) Whh on entry; becomes h̃, also stored in g_hh;
    h_next = hs = h + z ⊙ (h̃ − h)."""
    rhW += g_hh
    np.tanh(rhW, out=rhW)
    g_hh[...] = rhW
    np.subtract(rhW, h, out=h_next)
    h_next *= z
    h_next += h
    hs[...] = h_next


def _backward_hz(dh_out, z, hh, h_prev, dh, dhh, dz, dhh_c, dz_c, scratch):
    a, b = scratch
    dh += dh_out
    np.multiply(hh, hh, out=a)
    np.subtract(1, a, out=a)
    a *= z
    np.multiply(dh, a, out=dhh_c)
    dhh[...] = dhh_c
    np.subtract(hh, h_prev, out=a)
    a *= z
    np.subtract(1, z, out=b)
    a *= b
    np.multiply(dh, a, out=dz_c)
    dz[...] = dz_c


def _backward_r(drh, z, r, h_prev, dr, dh, dr_c, scratch):
    a, b = scratch
    np.subtract(1, r, out=a)
    a *= r
    a *= h_prev
    np.multiply(drh, a, out=dr_c)
    dr[...] = dr_c
    np.subtract(1, z, out=b)
    dh *= b
    drh *= r            # drh is not needed after this step
    dh += drh


# -- CuPy --------------------------------------------------------------------

def _cupy_kernels():
    k = {name: np.ElementwiseKernel(i, o, body, name) for name, (i, o, body) in KERNELS.items()}

    def forward_zr(g_zr, hW, h, rhs, rh):
        H = h.shape[1]
        k['gru_forward_zr'](h, hW[:, :H], hW[:, H:], g_zr[:, :H], g_zr[:, H:], rhs, rh)
        return hW[:, :H]

    def forward_h(g_hh, rhW, z, h, hs, h_next):
        k['gru_forward_h'](rhW, z, h, g_hh, hs, h_next)

    def backward_hz(dh_out, z, hh, h_prev, dh, dhh, dz, dhh_c, dz_c, scratch):
        k['gru_backward_hz'](dh_out, z, hh, h_prev, dh, dhh, dz, dhh_c, dz_c)

    def backward_r(drh, z, r, h_prev, dr, dh, dr_c, scratch):
        k['gru_backward_r'](drh, z, r, h_prev, dr, dh, dr_c)

    return forward_zr, forward_h, backward_hz, backward_r


if backend.GPU and hasattr(np, 'ElementwiseKernel'):
    FUSED = True
    gru_forward_zr, gru_forward_h, gru_backward_hz, gru_backward_r = _cupy_kernels()
else:
    FUSED = False
    gru_forward_zr, gru_forward_h, gru_backward_hz, gru_backward_r = (_forward_zr, _forward_h, _backward_hz,
                                                                      _backward_r)
