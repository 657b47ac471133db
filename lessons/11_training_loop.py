# %% [markdown]
# # Lesson 11: the training loop
#
# We have a network (lesson 10) and gradients (lessons 02-09). Training needs four more
# pieces, each in its own small file:
#
# 1. a **loss**: softmax cross-entropy with label smoothing (`tinyeffnet/engine/ops.py`);
# 2. an **optimizer**: SGD with Nesterov momentum and weight decay (`tinyeffnet/training/optimizer.py`);
# 3. a **learning-rate schedule**: linear warmup then cosine decay (`tinyeffnet/training/schedule.py`);
# 4. **data** in batches (`data_tools`), and one **step** that ties them together
#    (`tinyeffnet/training/step.py`), which the runtime runs (`tinyeffnet/training/runtime.py`).
#
# At the end we run real steps of a tiny EfficientNet on real images, in pure Python, and
# watch the loss go down.

# %%
import os
import sys

import tinyeffnet  # installed with `pip install -e .`: the lessons find the repository through it

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(tinyeffnet.__file__))), "lessons"))
import course  # lessons/course.py: figures, tables and the exercises' checks

lesson = course.Lesson("11")
ROOT = course.ROOT

import math
import time

import tinyeffnet.engine.ops as fn
from backends import get_backend
from data_tools import Loader, open_dataset
from tinyeffnet import Tensor, functional as F
from tinyeffnet.training import step as steps
from tinyeffnet.training.config import PRESETS, TrainConfig
from tinyeffnet.model.efficientnet import build_model
from tinyeffnet.engine.gradcheck import check_elementwise
from tinyeffnet.training.metrics import topk_correct
from tinyeffnet.training.optimizer import NesterovSGD, apply_updates, decay_mask
from tinyeffnet.training.runtime import make_runtime
from tinyeffnet.training.schedule import learning_rate, scaled_peak_lr

from tinyeffnet.plotting.charts import Series, line_chart
from tinyeffnet.plotting.images import image_grid

py = get_backend("python")

# %% [markdown]
# ## 1. The loss, with label smoothing
#
# The network outputs one *logit* per class. Softmax turns them into probabilities
# p_k = exp(z_k) / sum_j exp(z_j), and the cross-entropy against a target distribution t
# is -sum_k t_k log p_k.
#
# With **label smoothing** s (0.1 in EfficientNet's recipe) the target is not one-hot:
# the label gets 1 - s + s / K and every other class s / K. The network is no longer
# pushed towards infinite logits, which helps it generalise.
#
# By hand, 3 classes, logits (2, 1, 0), label 0, s = 0.1: the target is
# (0.9 + 0.0333, 0.0333, 0.0333); log p = z - log(e^2 + e^1 + e^0) = z - 2.4076.

# %%
logits = Tensor([[2.0, 1.0, 0.0]], requires_grad=True)
loss = F.cross_entropy(logits, [0], label_smoothing=0.1)
log_z = math.log(math.exp(2) + math.exp(1) + 1)
target = [0.9 + 0.1 / 3, 0.1 / 3, 0.1 / 3]
by_hand = -sum(t * (z - log_z) for t, z in zip(target, [2.0, 1.0, 0.0]))
print(f"cross-entropy: library {loss.item():.10f}, by hand {by_hand:.10f}")

# %% [markdown]
# Its gradient with respect to the logits is simply (softmax - target) / N, so the
# Function keeps only the log-probabilities and the target:

# %%
print(course.source(fn.SoftmaxCrossEntropy))
loss.backward()
softmax = [math.exp(z - log_z) for z in (2.0, 1.0, 0.0)]
print("gradient:", [round(g, 6) for g in logits.grad.to_flat()],
      " softmax - target:", [round(p - t, 6) for p, t in zip(softmax, target)])
z = Tensor.normal(0, (4, 5), requires_grad=True)
err = check_elementwise(lambda z: F.cross_entropy(z, [0, 3, 1, 4], label_smoothing=0.1), [z])
print(f"finite differences: worst error {err:.1e}")

# %% [markdown]
# A consequence worth remembering: with smoothing the loss cannot reach 0. Cross-entropy
# is smallest when the softmax equals the target, and its minimum is then the entropy of
# the target itself.
#
# ### Exercise 11.1: the floor of the loss
#
# Write `smoothing_floor(num_classes, smoothing)`: that minimum, the entropy
# -sum_k t_k log t_k of the smoothed target. The check feeds the library's loss the
# logits log(t), where it reaches its minimum.

# %%
# EXERCISE 11.1: your code here
def smoothing_floor(num_classes, smoothing):
    raise NotImplementedError


# %%
lesson.exercise("11.1", smoothing_floor)

# %% [markdown]
# For 10 classes and s = 0.1 the target is 0.91 on the label and 0.01 elsewhere:

# %%
floor = -(0.91 * math.log(0.91) + 9 * 0.01 * math.log(0.01))
print(f"lowest possible training loss with 10 classes and smoothing 0.1: {floor:.4f}")

# %% [markdown]
# **Accuracy** is reported as top-1 and top-5: is the label among the 1 (or 5) largest
# logits? `tinyeffnet/training/metrics.py` counts, for each example, how many classes score
# strictly higher than the label; no sorting, so it runs inside a compiled program too.

# %%
scores = py.from_flat([0.1, 0.9, 0.3,   0.8, 0.1, 0.2], (2, 3))
correct = topk_correct(py, scores, py.from_flat([1, 2], (2,), "int32"), ks=(1, 2))
print("top-1:", py.to_flat(correct[1]), " top-2:", py.to_flat(correct[2]))

# %% [markdown]
# ## 2. SGD with Nesterov momentum and weight decay
#
# The paper trains with SGD, Nesterov momentum 0.9 and weight decay 1e-4:
#
#     g = grad + wd * param          (not for BN gamma and beta, as in the official code)
#     v = g + momentum * v
#     param = param - lr * (g + momentum * v)
#
# Nesterov "looks ahead": it steps along the gradient plus the momentum it is about to
# have. One step by hand, param 1.0, grad 0.5, lr 0.1, v starting at 0:
# g = 0.5001, v = 0.5001, step = 0.5001 * 1.9 = 0.95019, param = 1 - 0.095019 = 0.904981.
#
# The optimizer has optax's shape: `update(grads, state, params)` returns the step's
# direction (the state keeps v, the "trace"), and `apply_updates` scales it by this
# step's learning rate, which the schedule feeds in as a number.

# %%
print(course.source(NesterovSGD.update))
params = {"conv.weight": py.from_flat([1.0], (1,)), "bn.gamma": py.from_flat([1.0], (1,))}
grads = {"conv.weight": py.from_flat([0.5], (1,)), "bn.gamma": py.from_flat([0.5], (1,))}
sgd = NesterovSGD(py, list(params), momentum=0.9, weight_decay=1e-4)
opt_state = sgd.init(params)
updates, opt_state = sgd.update(grads, opt_state, params)
new_params = apply_updates(py, params, updates, lr=0.1)
print("decay mask:", decay_mask(params))
print("after one step:", {n: py.to_flat(p)[0] for n, p in new_params.items()})

# %% [markdown]
# (Lesson 13 checks that the JAX step's optax chain makes exactly the same update.)
#
# ### Exercise 11.2: one Nesterov step
#
# Write `nesterov_step(param, grad, velocity, lr, momentum, weight_decay)` ->
# (new_param, new_velocity) for one float parameter that gets weight decay, from the three
# lines above. The check runs `NesterovSGD` for three steps with three settings and
# compares every step.

# %%
# EXERCISE 11.2: your code here
def nesterov_step(param, grad, velocity, lr, momentum, weight_decay):
    raise NotImplementedError


# %%
lesson.exercise("11.2", nesterov_step)

# %% [markdown]
# ## 3. The learning-rate schedule, and the paper's 300-vs-350 ambiguity
#
# Section IV-B: "350 epochs. At the first 5 epochs, the learning rate increases linearly
# from 0 to 0.4. Then [...] the learning rate of epoch t <= 300 is set to
# 0.5 * lr * (cos(pi * t / 300) + 1)." Taken literally, the rate reaches 0 at epoch 300
# and the last 50 epochs train at rate 0. The likelier intent is a cosine over the whole
# run. `learning_rate` takes the horizon T as a parameter; the trainer's default is the
# whole run (`--cosine-epochs`, default `--epochs`), and `--cosine-epochs 300` gives the
# literal reading. The peak 0.4 belongs to batch 2048; other batch sizes scale it
# linearly (0.4 * batch / 2048).

# %%
print(course.source(learning_rate))
table = {epoch: (learning_rate(epoch, 0.4, 5, 350), learning_rate(epoch, 0.4, 5, 300))
         for epoch in (0, 1, 2.5, 5, 100, 175, 250, 300, 325, 350)}
lesson.table(["epoch", "lr, T = 350", "lr, T = 300"], [(e, f"{a:.5f}", f"{b:.5f}") for e, (a, b) in table.items()])
print("peak for batch 256:", scaled_peak_lr(0.4, 256))
epochs = [e / 4 for e in range(0, 4 * 350 + 1)]
lesson.show(line_chart([dict(
    title="warmup 5 epochs to 0.4, then cosine", xlabel="epoch", ylabel="learning rate", integer_x=True,
    series=[Series([(e, learning_rate(e, 0.4, 5, 350)) for e in epochs], "cosine over the whole run (T = 350)"),
            Series([(e, learning_rate(e, 0.4, 5, 300)) for e in epochs], "the paper read literally (T = 300)",
                   style="dashed")])], size=(760, 460)), "lr_schedules")

# %% [markdown]
# Note t counts from the start of training, so just after warmup the cosine is already at
# 0.5 * 0.4 * (1 + cos(pi * 5 / 350)) = 0.39980, not 0.4: the formula read as written.
# The trainer evaluates the schedule every *step*, with a fractional epoch
# t = step / steps_per_epoch.
#
# ## 4. Data, configuration, and one step
#
# `python -m tinyeffnet.train` reads its flags into a `TrainConfig`; whatever is not given
# comes from a preset. With the embedded data (`--data default`, 20,000 Fashion-MNIST
# training images) the preset is `default`, sized for minutes on a CPU; ImageNet gets the
# paper's recipe (`imagenet`); `--backend python` gets `tiny`.

# %%
cfg = TrainConfig(backend="jax", variant="base").resolved()
print({k: getattr(cfg, k) for k in ("preset", "data", "epochs", "batch_size", "image_size", "lr", "warmup_epochs",
                                    "cosine_epochs", "weight_decay", "label_smoothing", "bn_momentum", "init",
                                    "augment", "dropout", "drop_connect")})
print("imagenet preset:", {k: PRESETS["imagenet"][k] for k in ("epochs", "batch_size", "image_size", "bn_momentum")})

# %% [markdown]
# The data: `open_dataset(spec, split, image_size)` and a `Loader` that yields
# deterministic batches (the order is a function of seed and epoch only, so a resumed run
# sees the same batches). Images leave the loader as raw uint8 RGB bytes in NHWC order
# (Fashion-MNIST's gray images repeated on 3 channels), a quarter of float32's size; the
# runtime normalises them where the model runs, with the dataset's `normalization`.

# %%
dataset = open_dataset("default", "train", image_size=16)
loader = Loader(dataset, batch_size=8, seed=0)
print(dataset.description, len(dataset), "images,", dataset.num_classes, "classes:", dataset.class_names)
batch = next(loader.batches(epoch=0))
print("batch:", loader.batch_shape, "labels", list(batch.labels), "valid", batch.valid,
      "first pixels", list(batch.images[:3]), "normalised", [round(v, 3) for v in
                                                              loader.normalization.floats(batch.images[:3])])

# %% [markdown]
# What the network sees, at the native 28x28 (the first 24 images of an epoch, before the
# model's normalisation; the batch above is the same data at 16x16):

# %%
view = Loader(open_dataset("default", "train", image_size=28, augment="none"), batch_size=24, seed=0)
view_batch = next(view.batches(epoch=0))
lesson.show(image_grid(view_batch.images, view.batch_shape, [dataset.class_names[i] for i in view_batch.labels],
                       columns=8, scale=3, title="Fashion-MNIST, the embedded training data"), "fashion_mnist")

# %% [markdown]
# The first pixels, 0, are background; normalised they are -0.81 = (0 / 255 - 0.286) / 0.353
# with Fashion-MNIST's pixel mean and standard deviation (`data_tools/pixels.py`,
# `data_tools/fashion_mnist.py`). Training images are also **augmented**, differently
# every epoch (`data_tools/augment.py`): Fashion-MNIST gets a random horizontal flip and a
# random shift of up to size / 8 pixels; ImageNet photos get EfficientNet's random
# resized crop, a flip and optionally AutoAugment; eval images only a fixed resize or
# center crop. (`--augment flip` keeps only the flip, `--augment none` trains on the eval
# view. The `default` preset above uses `flip`, without dropout or drop-connect: six
# epochs are too few for the paper's regularisation to pay off, see the README's tuning
# table.) Each example's randomness is seeded by (seed, epoch, index), so a batch is
# the same whoever builds it, whichever worker process, before or after a resume.
#
# One training step (`tinyeffnet/training/step.py: gradients`) binds the parameters into the
# model (`Module.bind`, lesson 08), runs the forward in training mode, the loss, and OUR
# backward; `make_train_step` adds the optimizer's update. The same function is the JAX
# step too (lesson 13): the runtime compiles it there and runs it as it is here. The state
# is a plain dict: params, buffers (BN moving statistics), optimizer state.
#
# ### Exercise 11.3: the training step
#
# Write it yourself first: `train_step(net, optimizer, state, images, labels, key, lr,
# label_smoothing)` -> (new state, loss), with everything of this lesson and lesson 02:
#
# 1. `net.train()`; then `with net.bind(state["params"], state["buffers"]) as leaves:`
#    (leaves maps each parameter's name to a fresh leaf Tensor that requires a gradient);
# 2. inside the block: logits = `net(Tensor(images, net.backend), key=key)` (the key drives
#    dropout and drop-connect), the loss `F.cross_entropy(logits, labels,
#    label_smoothing)`, `loss.backward()`, the gradients `leaf.grad.data` by name, and the
#    BN statistics this batch moved, `{name: b.data for name, b in net.named_buffers()}`;
# 3. after it: `optimizer.update(grads, state["opt_state"], state["params"])` and
#    `apply_updates(net.backend, state["params"], updates, lr)`.
#
# The check runs two steps of yours and of the library's from the same state on a tiny B0
# (with dropout and drop-connect, with and without smoothing, the network left in eval mode
# and its own arrays unlike the state's) and compares the loss, every parameter, BN
# statistic and momentum. Once it passes, the real steps below run on YOUR step, the first
# three compared with the library's step from the same state.

# %%
# EXERCISE 11.3: your code here
def train_step(net, optimizer, state, images, labels, key, lr, label_smoothing):
    raise NotImplementedError


# %%
lesson.exercise("11.3", train_step)

# %% [markdown]
# The library's, which also reports metrics (and can clip, freeze the backbone, keep an
# EMA of the weights), once yours passes:

# %%
lesson.reveal("11.3", course.source(steps.gradients), course.source(steps.make_train_step))

# %% [markdown]
# ## Real steps, in pure Python
#
# A tiny EfficientNet: width 0.25 and depth 0.1 keep all 7 stages but one block each and
# a quarter of the channels (127k weights instead of 4M for 10 classes). We repeat ten
# steps on the same 8 images: a network that can learn should memorise them, and the loss
# should fall towards the smoothing floor computed above. (On fresh batches the loss
# falls too, but it takes hundreds of steps to see through the noise.) As in the trainer,
# an evaluation comes first, and it leaves the network in eval mode (moving BN statistics,
# no dropout): the step must switch it back to training.

# %%
net = build_model("base", num_classes=10, width=0.25, depth=0.1, seed=0, bn_momentum=0.9)
runtime = make_runtime("python")
optimizer = runtime.make_optimizer([n for n, _ in net.named_parameters()])
state = runtime.put_state(steps.init_state(net, optimizer))
library_step = runtime.compile_train_step(steps.make_train_step(net, optimizer,
                                                                steps.StepOptions(label_smoothing=0.1)))
eval_step = runtime.compile_eval_step(steps.make_eval_step(net))
images, labels, valid = runtime.put_batch(batch, loader.batch_shape, loader.normalization)
print(f"{net.num_parameters():,} parameters; images {py.shape(images)} labels {py.to_flat(labels)}")


def eval_loss(state):
    sums = runtime.fetch(eval_step(state["params"], state["buffers"], images, labels, valid))
    return sums["loss"] / sums["count"]


def your_step(state, images, labels, key, lr):
    new, loss = lesson.answer("11.3")(net, optimizer, state, images, labels, key, lr, 0.1)
    return new, dict(loss=py.from_flat([float(loss.item() if hasattr(loss, "item") else loss)], ()))


def same_step(step, mine, theirs):
    """Your step's new state and loss against the library's, from the same state."""
    (new, metrics), (want, want_metrics) = mine, theirs
    lesson.agrees(f"step {step}: your loss", metrics["loss"], want_metrics["loss"])
    for group in ("params", "buffers"):
        for name, array in want[group].items():
            lesson.agrees(f"step {step}: {group} {name!r} after your step", new[group].get(name), array)


print(f"before training: eval-mode loss {eval_loss(state):.4f} (the network is now in eval mode)")
print("the steps below run on", "YOUR train_step, the first three checked against the library's"
      if lesson.passed("11.3") else "the library's step")
losses = []
start = time.time()
for step in range(10):
    key = runtime.step_key(0, step)
    mine = theirs = None
    if lesson.passed("11.3"):
        with lesson.plugged("11.3"):
            mine = your_step(state, images, labels, key, 0.05)
    if mine is None or step < 3:
        theirs = library_step(state, images, labels, key, 0.05)
    if mine is not None and theirs is not None:
        with lesson.plugged("11.3"):
            same_step(step, mine, theirs)
    state, metrics = mine if lesson.passed("11.3") else theirs
    values = runtime.fetch(metrics)
    losses.append(values["loss"])
    print(f"step {step}: loss {values['loss']:.4f}" + (f"  top-1 {values['top1']:.3f}" if "top1" in values else ""))
print(f"{(time.time() - start) / 10:.2f} s per step")
lesson.show(line_chart([dict(
    title="ten steps on the same 8 images, pure Python", xlabel="step", ylabel="training loss", integer_x=True,
    hlines=[(floor, f"label-smoothing floor {floor:.3f}")],
    series=[Series(list(enumerate(losses)), "loss"), Series(list(enumerate(losses)), None, (31, 119, 180), "markers")])],
    size=(640, 420)), "loss_curve")

# %% [markdown]
# That is the whole trainer in miniature. `tinyeffnet/training/loop.py: train` adds the
# bookkeeping around it: for each step, `lr = learning_rate(step / steps_per_epoch, ...)`;
# metrics are fetched one step late (so a fast device never waits for the host); a
# metrics.jsonl line every `--log-every` steps; a checkpoint now and then; an evaluation in
# eval mode (BN moving statistics, no dropout) after each epoch. Two options stay off
# unless asked: `--ema-decay 0.9999` keeps an exponential moving average of the weights
# (`steps.ema_update`, evaluated beside the raw weights, as the original EfficientNet
# did), and `--workers N` builds batches in N worker processes (`data_tools/workers.py`)
# while the model trains.
#
# ## Checks

# %%
assert abs(loss.item() - by_hand) < 1e-12, (loss.item(), by_hand)
assert all(abs(g - (p - t)) < 1e-12 for g, p, t in zip(logits.grad.to_flat(), softmax, target))
assert err < 1e-6
assert abs(floor - 0.5003) < 1e-4, floor
assert py.to_flat(correct[1]) == [1.0, 0.0] and py.to_flat(correct[2]) == [1.0, 1.0]
assert abs(py.to_flat(new_params["conv.weight"])[0] - 0.904981) < 1e-12, "Nesterov step by hand"
assert abs(py.to_flat(new_params["bn.gamma"])[0] - (1 - 0.1 * 0.5 * 1.9)) < 1e-12, "no weight decay on BN"
assert table[0] == (0.0, 0.0) and abs(table[2.5][0] - 0.2) < 1e-12, "linear warmup from 0"
assert table[300][1] == 0.0 and abs(table[300][0] - 0.2 * (1 + math.cos(math.pi * 300 / 350))) < 1e-12
assert table[350] == (0.0, 0.0) and table[325][1] == 0.0, "T = 300 read literally: rate 0 after epoch 300"
assert scaled_peak_lr(0.4, 256) == 0.05
assert cfg.preset == "default" and cfg.cosine_epochs == cfg.epochs
assert len(dataset) == 20_000 and dataset.num_classes == 10 and len(batch.images) == 8 * 16 * 16 * 3
assert batch.images[0] == 0 and abs(py.to_flat(images)[0] - (0.0 - 0.2860) / 0.3530) < 1e-12, "background"
assert sum(losses[-3:]) / 3 < 0.6 * losses[0], f"the loss should fall on repeated images: {losses}"
assert min(losses) > floor, "never below the label-smoothing floor"
lesson.finish()
