"""The learning-rate schedule of the paper (section IV-B): linear warmup, then cosine.

    lr(t) = peak * t / warmup                          for t < warmup
    lr(t) = 0.5 * peak * (1 + cos(pi * min(t, T) / T))  afterwards

t counts epochs from the start of training (fractional: step / steps_per_epoch), as in the
paper's formula. The paper writes T = 300 while training 350 epochs; `horizon` is T and
defaults to the whole run, so the rate reaches 0 at the last step. With horizon 300 of
350 epochs the rate stays at 0 for the last 50 epochs (the formula read literally).
Computed on the host in plain Python and fed to the compiled step as a number.
"""
import math


def scaled_peak_lr(base_lr, batch_size, reference_batch=2048):
    """The paper's 0.4 at batch 2048, scaled linearly for other global batch sizes."""
    return base_lr * batch_size / reference_batch


def learning_rate(epoch, peak, warmup_epochs, horizon_epochs):
    if warmup_epochs > 0 and epoch < warmup_epochs:
        return peak * epoch / warmup_epochs
    t = min(epoch, horizon_epochs)
    return 0.5 * peak * (1.0 + math.cos(math.pi * t / horizon_epochs))


def itstime(step, every, total=None):
    """True when periodic work is due once `step` steps are done: every `every` steps (0 or
    None: never) and, given `total`, after the last step. The one rule for logging,
    checkpoints and evaluations."""
    return bool(every) and step % every == 0 or step == total
