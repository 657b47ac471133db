"""What `python -m tinyeffnet.bench` measures: the conv primitive, a model's training step
(pure Python; JAX beside jax.grad of the same forward), and the input pipeline (data_tools)."""
