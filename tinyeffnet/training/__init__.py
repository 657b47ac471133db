"""Training: everything between a model and a finished run.

    config.py          TrainConfig: every flag, and the presets that fill in the rest
    runtime.py         what a backend needs beyond the layer code: devices, batches, compilation
    step.py            one training step and one eval step, written once for every backend
    optimizer.py       Nesterov SGD with weight decay, optax's interface on both backends
    schedule.py        warmup + cosine learning rate
    metrics.py         top-k accuracy and finiteness, computed inside the step
    metrics_file.py    metrics.jsonl
    checkpoint.py      the checkpoint file format (safetensors, checksummed) and finding one by path
    checkpoint_dir.py  a run's folder of checkpoints: save, best, pruning
    state.py           training state <-> checkpoint tensor names; a model from a checkpoint
    evaluation.py      top-1 / top-5 over an eval split, precise BN, the run's Evaluator
    rundir.py          the work directory: what it holds, refusing to overwrite, the starting point
    claim.py           one writer per work directory (a flock held while the run lives)
    preemption.py      stopping on SIGTERM / SIGINT, every process at the same step
    distributed.py     multi-host start-up and the device mesh
    loop.py            train(cfg): the Run, its loop and its end
"""
