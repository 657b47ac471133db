"""Reference solutions of lesson 06's exercises."""
AXES = (0, 1, 2)


def _normalised(x, eps):
    centred = x - x.mean(axis=AXES, keepdims=True)
    invstd = ((centred * centred).mean(axis=AXES, keepdims=True) + eps) ** -0.5  # biased variance
    return centred * invstd, invstd


def bn_forward(x, gamma, beta, eps):
    xhat, _ = _normalised(x, eps)
    return xhat * gamma + beta


def bn_backward(x, gamma, beta, dy, eps):
    m = x.shape[0] * x.shape[1] * x.shape[2]
    xhat, invstd = _normalised(x, eps)
    dxhat = dy * gamma
    # dL/dvar = -1/2 invstd^3 sum(dxhat (x - mean)), dL/dmean = -invstd sum(dxhat); substituted:
    dx = invstd * (1.0 / m) * (dxhat * float(m) - dxhat.sum(axis=AXES, keepdims=True)
                               - xhat * (dxhat * xhat).sum(axis=AXES, keepdims=True))
    return dx, (dy * xhat).sum(axis=AXES), dy.sum(axis=AXES)
