"""The model a quantization-aware fine-tuning run trains, from what it starts from (``gdq
quantize``'s ``--init``, ``--bits``, ``--numerics``, ``--tune-level``, ``--own-weights``,
``--blocks``)."""
from __future__ import annotations

import dataclasses

from ..checkpoint import read_checkpoint
from ..config import TRAIN_NUMERICS, ModelConfig, QuantConfig, from_dict
from ..errors import ConfigError


def qat_model_config(init: str, bits: tuple[int, ...], numerics: str = "int8", tune_level: int = 0,
                     own_weights: bool = False, blocks: int = 0) -> ModelConfig:
    """The Granular-DQ model config to train from the checkpoint ``init``:

    - a full-precision twin: its network, quantized at ``bits`` with ``numerics``;
    - a Granular-DQ model: itself, further trained (``numerics`` may go float -> int8, not back);
    - with ``tune_level``: the Granular-DQ model as it is, one level trained; ``blocks`` adds that
      level as an exit of so many blocks, ``own_weights`` gives the full-depth level weights of
      its own.
    """
    if numerics not in TRAIN_NUMERICS:
        raise ConfigError(f"``numerics`` '{numerics}' is unknown; valid: {list(TRAIN_NUMERICS)}")
    base = from_dict(ModelConfig, read_checkpoint(init)["model"])
    if tune_level and not base.quantized:
        raise ConfigError(f"``tune_level``: ``init`` {init} is a full-precision model; it needs a Granular-DQ model")
    if base.quantized and base.quant.bits != tuple(bits):
        raise ConfigError(f"``init`` {init} is a Granular-DQ model with bits {list(base.quant.bits)}, not ``bits`` "
                          f"{','.join(map(str, bits))}")
    if base.numerics == "int8" and numerics != "int8":
        raise ConfigError(f"``init`` {init} was trained with int8 numerics; it cannot go back to ``numerics`` float")
    if tune_level:  # the --init's model as it is (its numerics too): only that level trains
        if blocks and (tune_level, blocks) not in base.exits:
            return dataclasses.replace(base, exits=tuple(sorted({*base.exits, (tune_level, blocks)})))
        if own_weights and not blocks and tune_level not in base.level_weights:
            return dataclasses.replace(base, level_weights=tuple(sorted({*base.level_weights, tune_level})))
        return base
    if base.quantized:
        return dataclasses.replace(base, numerics=numerics)
    return dataclasses.replace(base, quantized=True, quant=QuantConfig(bits=tuple(bits)), numerics=numerics)


__all__ = ["qat_model_config"]
