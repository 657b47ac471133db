"""Checks of lesson 16's exercises: a variant of your own, and its parameter count by hand."""
from .common import Unfinished, Wrong, counting_by_hand, exercise, given


@exercise("16.1", "my_variant", """Set my_variant to a variant of your own, a name build_model understands that
          builds none of the paper's seven networks: SE moved to the end (seend@stageA-B) or removed
          (nose@stageA-B) in a range of Table I's stages 2..8, e.g. nose@stage2-7 keeps SE only in the last
          stage. (seend@stage2-8 is the paper's seend@all.)""")
def check_my_variant(my_variant):
    from tinyeffnet.model.efficientnet import block_specs
    from tinyeffnet.model.spec import VARIANTS, canonical_variant
    try:
        name = canonical_variant(given(my_variant))
    except ValueError as e:
        raise Wrong(str(e)) from None
    positions = [s.se_position for s in block_specs(name)]
    for paper in VARIANTS:
        if positions == [s.se_position for s in block_specs(paper)]:
            raise Wrong(f"{name} builds the same network as the paper's {paper}: pick another range of stages")
    return f"build_model understands {name!r}, a network none of the paper's seven"


@exercise("16.2", "my_variant_parameters", """Write my_variant_parameters(base_count): your variant's parameters
          (full B0, 1000 classes) from base's count and block_specs, as in lesson 10, by hand.""")
def check_my_variant_parameters(my_variant_parameters, variant=None):
    from tinyeffnet.model.efficientnet import build_model
    if variant is None:
        raise Unfinished("Choose your variant first (exercise 16.1).")
    base = build_model("base", backend="meta").num_parameters()
    want = build_model(variant, backend="meta").num_parameters()
    with counting_by_hand("my_variant_parameters"):
        got = given(my_variant_parameters(base))
    if got != want:
        raise Wrong(f"{variant} has {want:,} parameters, yours {got:,} ({got - want:+,})")
    return f"{variant}: {want:,} parameters, {want - base:+,} against base"
