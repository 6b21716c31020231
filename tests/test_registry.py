from __future__ import annotations

import pytest
import torch

from attnbench import reference
from attnbench.cases import DEVICES, DTYPES, MODES, Shape
from attnbench.errors import UserError
from attnbench.registry import REGISTRY, Registry, Variant

SOFTMAX = {
    "softmax.naive",
    "softmax.sdpa",
    "softmax.sdpa_math",
    "softmax.sdpa_flash",
    "softmax.sdpa_efficient",
    "softmax.sdpa_cudnn",
    "softmax.flex",
}


def test_discovery_finds_every_softmax_variant_without_a_central_list():
    names = {v.name for v in REGISTRY.all()}
    assert names >= SOFTMAX
    assert {"external.xformers", "external.flash_attn"} <= names


def test_lookup_by_exact_name_glob_and_family():
    assert [v.name for v in REGISTRY.select("softmax.naive")] == ["softmax.naive"]
    assert {v.name for v in REGISTRY.select("softmax.*")} == SOFTMAX
    family = {v.name for v in REGISTRY.select("softmax")}
    assert family == SOFTMAX | {"external.xformers", "external.flash_attn"}
    assert {v.name for v in REGISTRY.select("softmax.naive, softmax.sdpa_*")} >= {
        "softmax.naive",
        "softmax.sdpa_math",
    }


@pytest.mark.parametrize("pattern", ["softmax.naiv", "nothing.*", "sofmax"])
def test_unknown_name_is_a_user_error_with_a_hint(pattern):
    with pytest.raises(UserError, match="no variant matches"):
        REGISTRY.select(pattern)
    with pytest.raises(UserError, match="unknown variant"):
        REGISTRY.get(pattern)


def test_register_sets_name_and_family_and_rejects_a_clashing_name():
    reg = Registry(packages=())

    @reg.register("mine.fast")
    class Fast(Variant):
        """A test variant."""

    assert Fast.name == "mine.fast" and Fast.family == "mine" and Fast.description == "A test variant."
    assert reg.get("mine.fast") is Fast

    class Other(Variant):
        pass

    with pytest.raises(ValueError, match="registered twice"):
        reg.register("mine.fast")(Other)
    with pytest.raises(TypeError):
        reg.register("mine.bad")(object)


def test_availability_gives_a_reason_when_a_variant_cannot_run_here():
    eff = REGISTRY.get("softmax.sdpa_efficient").available("cpu")
    assert not eff and "efficient" in eff.reason
    assert REGISTRY.get("softmax.naive").available("cpu")
    xf = REGISTRY.get("external.xformers").available("cpu")
    assert not xf and "cuda" in xf.reason
    if not torch.cuda.is_available():
        cuda = REGISTRY.get("softmax.naive").available("cuda")
        assert not cuda and cuda.reason == "no CUDA device here"


def test_unknown_parameter_is_a_user_error():
    with pytest.raises(UserError, match="has no parameter 'window'"):
        REGISTRY.get("softmax.naive").resolve_params({"window": 3})


@pytest.mark.parametrize("cls", REGISTRY.all(), ids=lambda c: c.name)
def test_every_variant_declares_consistent_metadata(cls):
    assert cls.family and cls.description
    assert (
        set(cls.dtypes) <= set(DTYPES) and set(cls.devices) <= set(DEVICES) and set(cls.modes) <= set(MODES)
    )
    assert cls.causal_modes and set(cls.causal_modes) <= {True, False}
    if cls.reference:
        reference.get(cls.reference)  # raises if the oracle does not exist
    shape = Shape(2, 3, 64, 16)
    flops = cls.flops(shape, causal=False, mode="fwd", params=cls.params)
    if flops is not None:
        assert flops > 0
        assert cls.flops(shape, causal=True, mode="fwd", params=cls.params) > 0
        assert cls.flops(shape, causal=False, mode="fwd+bwd", params=cls.params) > flops
