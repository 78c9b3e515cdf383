import json

import pytest

from granular_mobile.config import E2BConfig, ModelConfig, QuantConfig, TileConfig, from_dict, to_dict
from granular_mobile.errors import ConfigError


def test_roundtrip_json():
    cfg = ModelConfig(arch="edsr", scale=4, quant=QuantConfig(bits=(4, 6, 8), gbc_bits=(4, 6, 8), e2b_bits=(4, 6, 8)),
                      e2b=E2BConfig(thresholds=(2.0, 3.0), tile=64, calibrated=True))
    back = from_dict(ModelConfig, json.loads(json.dumps(to_dict(cfg))))
    assert back == cfg


@pytest.mark.parametrize("kwargs, needle", [
    (dict(scale=3), "scale 3 is not supported; valid: [2, 4]"),
    (dict(arch="v-dsr"), "arch 'v-dsr' is not a model family name"),
    (dict(quant=QuantConfig(bits=(4, 6, 8), e2b_bits=(4, 6, 8))), None),
])
def test_model_config_validation(kwargs, needle):
    if needle is None:
        ModelConfig(**kwargs)
        return
    with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
        ModelConfig(**kwargs)


def test_quant_config_names_bad_bit():
    with pytest.raises(ConfigError, match="bit-width 9 is not supported"):
        QuantConfig(bits=(4, 9))
    with pytest.raises(ConfigError, match="not in the bit set"):
        QuantConfig(bits=(4, 6, 8))  # default e2b_bits needs 5
    with pytest.raises(ConfigError, match="valid: \\[4, 5, 6, 8\\]"):
        QuantConfig().index(7)


def test_other_configs():
    with pytest.raises(ConfigError, match="quantiles"):
        E2BConfig(quantiles=(0.9, 0.5))
    with pytest.raises(ConfigError, match="merge 'x' is unknown"):
        TileConfig(merge="x")
    with pytest.raises(ConfigError, match="unknown field"):
        from_dict(TileConfig, {"tile": 96, "bogus": 1})
    assert TileConfig(96, 90).overlap == 6
