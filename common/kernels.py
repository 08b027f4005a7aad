"""The GRU's elementwise arithmetic, fused per step.

Each function below is one step of TimeGRU's loop between two matrix
products. On NumPy it is a handful of in-place ufunc calls; on CuPy it is one
``ElementwiseKernel`` launch, so a GRU step costs two cuBLAS products and two
kernels instead of a dozen small launches. Arguments are (N, H), (N, 2H) or
(N, 3H) views; results are written into the arrays passed, nothing is allocated.

``gru_forward_zr``, ``gru_forward_h``, ``gru_backward_hz`` and ``gru_backward_r``
are the book's form (the reset gate before the recurrent product, two
products a step); ``gru_forward_after`` and ``gru_backward_after`` the
reset-after form of PyTorch and cuDNN (one product ``h Wh`` a step, one kernel):

    z, r = σ(x Wx{z,r} + b{z,r} + h Wh{z,r} + bh{z,r})
    n    = tanh(x Wxn + bn + r ⊙ (h Whn + bhn))
    h'   = h + z ⊙ (n − h)

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
    # reset after: z, r ← σ(· + h Wh{z,r}), hn ← h Whn + bhn, n ← tanh(n + r ⊙ hn),
    # h' ← h + z ⊙ (n − h)   (z, r, n hold x Wx + b (+ bh for z, r) on entry)
    'gru_forward_after': ('T hWz, T hWr, T hWn, T bhn, T h', 'T z, T r, T n, T hn, T hs, T h_next',
                          'z = 1 / (1 + exp(-(z + hWz))); r = 1 / (1 + exp(-(r + hWr))); hn = hWn + bhn; '
                          'n = tanh(n + r * hn); h_next = h + z * (n - h); hs = h_next'),
    # dh ← dh + dh_out; dn_pre = dh ⊙ z ⊙ (1 − n²); dz_pre = dh ⊙ (n − h) ⊙ z ⊙ (1 − z);
    # dr_pre = dn_pre ⊙ hn ⊙ r ⊙ (1 − r); dnr = dn_pre ⊙ r (the gradient of h Whn + bhn);
    # dh ← dh ⊙ (1 − z)   (the [dz_pre | dr_pre | dnr] Wh^T term is added after)
    'gru_backward_after': ('T dh_out, T z, T r, T n, T h_prev, T hn',
                           'T dh, T dz, T dr, T dn, T dnr, T dz_c, T dr_c, T dnr_c',
                           'dh = dh + dh_out; dn = dh * z * (1 - n * n); dz = dh * (n - h_prev) * z * (1 - z); '
                           'dr = dn * hn * r * (1 - r); dnr = dn * r; dh = dh * (1 - z); '
                           'dz_c = dz; dr_c = dr; dnr_c = dnr'),
    # the SGD update of one parameter, in place: p ← p − lr · g; with weight decay p ← shrink · p − lr · g
    # (lr and shrink: scalars, or 0-d device arrays a CUDA graph reads at every replay)
    'sgd_step': ('T g, T lr', 'T p', 'p = p - lr * g'),
    'sgd_decay_step': ('T g, T lr, T shrink', 'T p', 'p = shrink * p - lr * g'),
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


def _forward_after(g, hW, bhn, h, hn, hs, h_next):
    """g = x Wx + b (+ bh for z, r) and hW = h Wh on entry, (N, 3H); hW
    becomes z | r | n, which is also stored in g; hn = h Whn + bhn;
    h_next = hs = h + z ⊙ (n − h)."""
    H = h.shape[1]
    zr, n = hW[:, :2 * H], hW[:, 2 * H:]
    zr += g[:, :2 * H]
    sigmoid(zr, out=zr)
    np.add(n, bhn, out=hn)
    np.multiply(zr[:, H:], hn, out=n)
    n += g[:, 2 * H:]
    np.tanh(n, out=n)
    g[...] = hW
    np.subtract(n, h, out=h_next)
    h_next *= hW[:, :H]
    h_next += h
    hs[...] = h_next


def _backward_after(dh_out, g, h_prev, hn, dh, dg, dcat, dnr, scratch):
    """g: z | r | n of the step, dg: their pre-activation gradients (written);
    dcat = [dz_pre | dr_pre | dn_pre ⊙ r] (N, 3H), contiguous, the operand of
    the product with Wh^T; dnr = dn_pre ⊙ r; dh ← (dh + dh_out) ⊙ (1 − z)."""
    a, b = scratch
    H = dh.shape[1]
    z, r, n = g[:, :H], g[:, H:2 * H], g[:, 2 * H:]
    dz, dr, dn = dcat[:, :H], dcat[:, H:2 * H], dcat[:, 2 * H:]
    dh += dh_out
    np.multiply(n, n, out=a)
    np.subtract(1, a, out=a)
    a *= z
    np.multiply(dh, a, out=dn)
    np.subtract(n, h_prev, out=a)
    a *= z
    np.subtract(1, z, out=b)
    a *= b
    np.multiply(dh, a, out=dz)
    dh *= b
    np.subtract(1, r, out=a)
    a *= r
    a *= hn
    np.multiply(dn, a, out=dr)
    dg[...] = dcat
    dn *= r
    dnr[...] = dn


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

    def forward_after(g, hW, bhn, h, hn, hs, h_next):
        H = h.shape[1]
        k['gru_forward_after'](hW[:, :H], hW[:, H:2 * H], hW[:, 2 * H:], bhn, h,
                               g[:, :H], g[:, H:2 * H], g[:, 2 * H:], hn, hs, h_next)

    def backward_after(dh_out, g, h_prev, hn, dh, dg, dcat, dnr, scratch):
        H = dh.shape[1]
        k['gru_backward_after'](dh_out, g[:, :H], g[:, H:2 * H], g[:, 2 * H:], h_prev, hn,
                                dh, dg[:, :H], dg[:, H:2 * H], dg[:, 2 * H:], dnr,
                                dcat[:, :H], dcat[:, H:2 * H], dcat[:, 2 * H:])

    return forward_zr, forward_h, backward_hz, backward_r, forward_after, backward_after


if backend.GPU and hasattr(np, 'ElementwiseKernel'):
    FUSED = True
    (gru_forward_zr, gru_forward_h, gru_backward_hz, gru_backward_r,
     gru_forward_after, gru_backward_after) = _cupy_kernels()
else:
    FUSED = False
    (gru_forward_zr, gru_forward_h, gru_backward_hz, gru_backward_r,
     gru_forward_after, gru_backward_after) = (_forward_zr, _forward_h, _backward_hz, _backward_r,
                                               _forward_after, _backward_after)

if FUSED:
    sgd_step, sgd_decay_step = (np.ElementwiseKernel(*KERNELS[name], name) for name in ('sgd_step', 'sgd_decay_step'))
