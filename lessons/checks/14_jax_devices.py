"""Checks of lesson 14's exercise: bfloat16 rounding in JAX, on the bits."""
import random

from .common import Wrong, exercise, given

NAN_BITS = (0x7FC00000, 0xFFC00000, 0x7F800001, 0x7FFFFFFF, 0xFF800001, 0x7FBF8000)  # quiet, signalling, payloads


def _cases():
    rng = random.Random(1401)
    values = [rng.gauss(0, 1) * 10 ** rng.randint(-8, 8) for _ in range(300)]
    values += [1.0 + 2 ** -8, 1.0 + 3 * 2 ** -8, -(1.0 + 2 ** -8), 3.0e38, 3.3961776e38, 3.4e38, -3.4e38, 1e-40, 0.0,
               -0.0, 1.0, float("inf"), float("-inf")]
    return values  # ties to even up and down, values that round to inf, a subnormal, zeros, infinities


@exercise("14.1", "to_bfloat16", """Write to_bfloat16(x) in JAX: a float32 array x rounded to bfloat16
          precision (kept as float32), bit for bit as JAX's cast (XLA's convert): view its bits as uint32
          (jax.lax.bitcast_convert_type), round away the low 16 bits to nearest, ties to even (add 0x7FFF plus
          the lowest kept bit, then clear the low 16 bits), view them as float32 again; a NaN, whose bits that
          arithmetic would carry into inf or 0, becomes the quiet NaN 0x7FC00000 with x's sign bit
          (jnp.where on jnp.isnan(x)). Without astype(bfloat16): that is what the check compares with. It must
          run under jax.jit.""", builds="bfloat16 rounding in JAX")
def check_to_bfloat16(to_bfloat16):
    import jax
    import jax.numpy as jnp
    finite = jnp.asarray(_cases(), jnp.float32)
    nans = jax.lax.bitcast_convert_type(jnp.asarray(NAN_BITS, jnp.uint32), jnp.float32)
    x = jnp.concatenate([finite, nans])
    program = str(jax.make_jaxpr(lambda v: given(to_bfloat16(v)))(x))
    if "bf16" in program:
        raise Wrong("your code converts to bfloat16 (astype): round the bits yourself")
    got = jax.jit(to_bfloat16)(x)
    if getattr(got, "shape", None) != x.shape or got.dtype != jnp.float32:
        raise Wrong(f"return a float32 array of x's shape {x.shape}, yours is "
                    f"{getattr(got, 'dtype', type(got).__name__)} of shape {getattr(got, 'shape', None)}")
    want = x.astype(jnp.bfloat16).astype(jnp.float32)
    bits = lambda v: jax.lax.bitcast_convert_type(v, jnp.uint32).tolist()  # noqa: E731  (NaN != NaN: compare bits)
    for v, b, g, w in zip(x.tolist(), bits(x), bits(got), bits(want)):
        if g != w:
            what = f"the NaN {b:#010x}" if b in NAN_BITS else repr(v)
            raise Wrong(f"{what} in bfloat16 is {w:#010x} (as JAX's cast rounds it), yours {g:#010x}"
                        + (": a NaN must stay a NaN" if b in NAN_BITS else ""))
    return (f"bit for bit JAX's cast on {x.size} values: ties, overflow to inf, subnormals, zeros, infinities and "
            f"{len(NAN_BITS)} NaNs")
