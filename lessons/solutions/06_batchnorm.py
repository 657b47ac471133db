"""Reference solutions of lesson 06's exercises."""


def bn_backward(x, gamma, dy, eps):
    axes = (0, 1, 2)
    m = x.shape[0] * x.shape[1] * x.shape[2]
    centred = x - x.mean(axis=axes, keepdims=True)
    invstd = ((centred * centred).mean(axis=axes, keepdims=True) + eps) ** -0.5
    xhat = centred * invstd
    dxhat = dy * gamma
    dx = invstd * (1.0 / m) * (dxhat * float(m) - dxhat.sum(axis=axes, keepdims=True)
                               - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True))
    dgamma = (dy * xhat).sum(axis=axes)
    return dx, dgamma
