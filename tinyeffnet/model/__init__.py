"""EfficientNet B0-B7 and the paper's seven SE variants: `build_model` is the one way to make one,
`ModelSpec` the one record of what network it is."""
from .efficientnet import PAPER_TABLE2, BlockSpec, EfficientNet, MBConv, block_specs, build_model
from .spec import (DEFAULT_BN_EPS, DEFAULT_PADDING, NETWORK_FIELDS, SCALING, VARIANTS, ModelSpec, canonical_model,
                   canonical_variant)

__all__ = ["build_model", "ModelSpec", "NETWORK_FIELDS", "canonical_variant", "canonical_model", "block_specs",
           "BlockSpec", "EfficientNet", "MBConv", "VARIANTS", "SCALING", "PAPER_TABLE2", "DEFAULT_PADDING",
           "DEFAULT_BN_EPS"]
