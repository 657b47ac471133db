"""EfficientNet B0-B7 and the paper's seven SE variants: `build_model` is the one way to make one,
`ModelSpec` the one record of what network it is and how it is fed."""
from .efficientnet import PAPER_TABLE2, BlockSpec, EfficientNet, MBConv, block_specs, build_model
from .spec import (DEFAULT_BN_EPS, DEFAULT_PADDING, MULTIPLIER_RULE, NETWORK_FIELDS, SCALING, VARIANTS, Feed,
                   ModelSpec, canonical_model, canonical_variant, default_resolution, multipliers, valid_multiplier)

__all__ = ["build_model", "ModelSpec", "Feed", "NETWORK_FIELDS", "canonical_variant", "canonical_model",
           "default_resolution", "multipliers", "valid_multiplier", "MULTIPLIER_RULE", "block_specs", "BlockSpec",
           "EfficientNet", "MBConv", "VARIANTS", "SCALING", "PAPER_TABLE2", "DEFAULT_PADDING", "DEFAULT_BN_EPS"]
