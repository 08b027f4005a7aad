"""Independent references: the GRU equations written out step by step, plainly."""
import numpy as np


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def gru_reference(xs, Wx, Wh, b, h0=None):
    """GUIDE section 1, one step at a time, one gate at a time."""
    N, T, D = xs.shape
    H = Wh.shape[0]
    Wxz, Wxr, Wxh = Wx[:, :H], Wx[:, H:2 * H], Wx[:, 2 * H:]
    Whz, Whr, Whh = Wh[:, :H], Wh[:, H:2 * H], Wh[:, 2 * H:]
    bz, br, bh = b[:H], b[H:2 * H], b[2 * H:]
    h = np.zeros((N, H)) if h0 is None else h0
    out = []
    for t in range(T):
        x = xs[:, t]
        z = sigmoid(x @ Wxz + h @ Whz + bz)
        r = sigmoid(x @ Wxr + h @ Whr + br)
        h_hat = np.tanh(x @ Wxh + (r * h) @ Whh + bh)
        h = (1 - z) * h + z * h_hat
        out.append(h)
    return np.stack(out, axis=1)


def lstm_reference(xs, Wx, Wh, b):
    N, T, D = xs.shape
    H = Wh.shape[0]
    h = np.zeros((N, H))
    c = np.zeros((N, H))
    out = []
    for t in range(T):
        a = xs[:, t] @ Wx + h @ Wh + b
        f, g, i, o = sigmoid(a[:, :H]), np.tanh(a[:, H:2 * H]), sigmoid(a[:, 2 * H:3 * H]), sigmoid(a[:, 3 * H:])
        c = f * c + g * i
        h = o * np.tanh(c)
        out.append(h)
    return np.stack(out, axis=1)
