"""EfficientNet B0-B7 and the paper's seven SE variants: `build_model` is the one way to make one."""
from .efficientnet import (DEFAULT_BN_EPS, DEFAULT_PADDING, PAPER_TABLE2, SCALING, VARIANTS, BlockSpec,
                           EfficientNet, MBConv, block_specs, build_model, canonical_model, canonical_variant)

__all__ = ["build_model", "canonical_variant", "canonical_model", "block_specs", "BlockSpec", "EfficientNet",
           "MBConv", "VARIANTS", "SCALING", "PAPER_TABLE2", "DEFAULT_PADDING", "DEFAULT_BN_EPS"]
