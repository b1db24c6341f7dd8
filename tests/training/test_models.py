"""Net1D encoders, registry, checkpoint loading and MAC counting.

The conformance vectors and state-dict listings of the published encoders live in
../shared/reference beside the project root; tests that need them skip with a reason where absent.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from torch import nn

from edge_runtime.spec import SignalSpec
from training.models import (
    ANYPPG_PPG, ECGFOUNDER, EncoderOutput, ModelEntry, Net1D, Net1DConfig, build_model,
    count_macs, count_params, list_models, load_encoder_checkpoint, register_model,
)

REFERENCE = Path(__file__).resolve().parents[2].parent / "shared" / "reference"
SMALL_VARIANTS = ["net1d-small", "net1d-ecg-small", "net1d-tiny", "net1d-ecg-tiny"]


def _reference(name: str) -> Path:
    p = REFERENCE / name
    if not p.exists():
        pytest.skip(f"reference file not present: {p}")
    return p


def _tsv_shapes(name: str) -> dict[str, list[int]]:
    rows = [ln.split("\t") for ln in _reference(name).read_text().splitlines()
            if ln.strip() and not ln.startswith("#")]
    return {k: ast.literal_eval(s) for k, s in rows}


def _meta(cfg: Net1DConfig) -> Net1D:
    """Build without allocating or initialising weights: keys, shapes and counts only."""
    with torch.device("meta"):
        return Net1D(cfg)


@pytest.fixture(scope="module")
def conformance():
    return torch.load(_reference("net1d_conformance.pt"), weights_only=True)


@pytest.fixture(scope="module")
def ecgfounder():
    """The one real 30.6 M-parameter ECGFounder of this file (built once, ~0.4 s)."""
    torch.manual_seed(0)
    return build_model("ecgfounder-net1d")


# --- architecture: published behaviour -------------------------------------------------------

@pytest.mark.parametrize("case", ["ppg_small", "ecg_small", "ppg_odd_length"])
def test_conformance_vectors(conformance, case):
    c = conformance[case]
    model = Net1D(**c["config"])
    model.load_state_dict(c["state_dict"], strict=True)
    model.eval()
    with torch.no_grad():
        out = model(c["input"])
    assert isinstance(out, EncoderOutput)
    assert out.embedding.shape == c["output"].shape
    torch.testing.assert_close(out.embedding, c["output"], atol=1e-5, rtol=0)
    b, length = c["input"].shape[0], c["input"].shape[-1]
    assert out.features.shape == (b, model.embed_dim, model.output_length(length))
    torch.testing.assert_close(out.features.mean(-1), out.embedding)


@pytest.mark.parametrize("cfg, n_params", [(ANYPPG_PPG, 4_044_272), (ECGFOUNDER, 30_654_000)],
                         ids=["anyppg", "ecgfounder"])
def test_published_param_counts(cfg, n_params):
    assert count_params(_meta(cfg)) == n_params


@pytest.mark.parametrize("cfg, tsv", [(ANYPPG_PPG, "anyppg_ppg_encoder_state_dict.tsv"),
                                      (ECGFOUNDER, "ecgfounder_encoder_state_dict.tsv")],
                         ids=["anyppg", "ecgfounder"])
def test_state_dict_keys_and_shapes_match_published(cfg, tsv):
    expected = _tsv_shapes(tsv)
    got = {k: list(v.shape) for k, v in _meta(cfg).state_dict().items()}
    assert list(got) == list(expected)          # same keys, same order
    assert got == expected


def test_registry_published_entries_match_presets():
    e = build_model("anyppg-net1d")
    assert (e.input_kind, e.embed_dim, e.input_shape, e.input_fs) == ("ppg", 512, (1, 1250), 125.0)
    assert count_params(e.model) == 4_044_272
    assert Net1DConfig.from_dict(e.config) == ANYPPG_PPG


@pytest.mark.parametrize("length", [1, 2, 7, 1001, 1250])
def test_any_length_same_padding(length):
    model = build_model("net1d-tiny").model.eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, length))
    assert out.features.shape == (2, 32, model.output_length(length))
    assert torch.isfinite(out.embedding).all()


def test_dropout_only_in_training():
    model = build_model("net1d-tiny").model
    x = torch.randn(2, 1, 250)
    model.train()
    a, b = model(x).embedding, model(x).embedding
    assert not torch.allclose(a, b)             # p=0.5 dropout is active
    model.eval()
    with torch.no_grad():
        assert torch.equal(model(x).embedding, model(x).embedding)


def test_grad_checkpointing_same_gradients():
    torch.manual_seed(0)
    model = build_model("net1d-tiny", use_do=False).model.train()
    x = torch.randn(3, 1, 300)
    grads = []
    for ckpt in (False, True):
        model.zero_grad()
        model.set_grad_checkpointing(ckpt)
        model(x).embedding.square().sum().backward()
        grads.append(model.first_conv.conv.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


def test_config_validation():
    with pytest.raises(ValueError, match="equal length"):
        Net1DConfig(filter_list=(16, 32), m_blocks_list=(1,))
    with pytest.raises(ValueError, match="groups"):
        Net1DConfig(base_filters=8, filter_list=(8,), m_blocks_list=(1,), groups_width=16)
    with pytest.raises(ValueError, match="narrows"):
        Net1DConfig(base_filters=32, filter_list=(16,), m_blocks_list=(1,), groups_width=8)
    with pytest.raises(ValueError, match=r"expects \(B, 1, L\)"):
        build_model("net1d-tiny").model(torch.zeros(1, 2, 100))


# --- registry --------------------------------------------------------------------------------

def test_list_models():
    names = list_models()
    for n in ["anyppg-net1d", "ecgfounder-net1d", *SMALL_VARIANTS]:
        assert n in names


def test_unknown_model_lists_known_names():
    with pytest.raises(ValueError, match="unknown model 'nope'.*net1d-tiny"):
        build_model("nope")


def test_unknown_override_rejected():
    with pytest.raises(ValueError, match="unknown override"):
        build_model("net1d-tiny", n_layers=3)


def test_overrides_and_spec():
    e = build_model("net1d-tiny", filter_list=[8, 16], m_blocks_list=[1, 1], spec="full")
    assert e.embed_dim == 16 and e.config["filter_list"] == [8, 16]
    assert e.spec.ecg_fs == 500.0


def test_register_duplicate_name_rejected():
    with pytest.raises(ValueError, match="already registered"):
        register_model("net1d-tiny")(lambda **kw: None)


@pytest.mark.parametrize("name", SMALL_VARIANTS)
def test_small_variant_forward(name):
    e = build_model(name)
    assert isinstance(e, ModelEntry) and isinstance(e.spec, SignalSpec)
    assert e.input_kind == ("ecg" if "ecg" in name else "ppg")
    assert e.input_shape == (1, 1250) and e.input_fs == 125.0
    n = count_params(e.model)
    if "tiny" in name:
        assert 1_000 <= n <= 10_000
    else:
        assert 100_000 <= n <= 300_000
        assert e.embed_dim in (64, 128)
    e.model.eval()
    with torch.no_grad():
        out = e.model(torch.randn(2, *e.input_shape))
    assert isinstance(out, EncoderOutput) and out._fields == ("embedding", "features")
    assert out.embedding.shape == (2, e.embed_dim)
    assert out.features.shape == (2, e.embed_dim, e.model.output_length(e.input_len))


# --- checkpoint loading ----------------------------------------------------------------------

def _randomised(model: nn.Module) -> dict[str, torch.Tensor]:
    """A state dict with every float tensor redrawn, so a successful load is observable."""
    g = torch.Generator().manual_seed(1)
    return {k: (torch.rand(v.shape, generator=g) + 0.5 if v.is_floating_point() else v + 3)
            for k, v in model.state_dict().items()}


def _assert_loaded(model: nn.Module, sd: dict[str, torch.Tensor]):
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), k


def test_load_wrapped_module_prefixed_checkpoint(tmp_path):
    src = build_model("anyppg-net1d").model
    sd = _randomised(src)
    path = tmp_path / "anyppg_ckpt.pth"
    torch.save({"epoch": 4, "state_dict": {f"module.{k}": v for k, v in sd.items()}}, path)
    dst = build_model("anyppg-net1d")
    res = load_encoder_checkpoint(dst, path)
    assert res.loaded == len(sd) and not res.ignored
    assert "'state_dict'" in res.source and "module." in res.source
    _assert_loaded(dst.model, sd)


def test_load_raw_state_dict_and_missing_batch_counters():
    model = build_model("net1d-small").model
    sd = _randomised(model)
    sd_no_counter = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}
    load_encoder_checkpoint(model, sd_no_counter)
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, sd[k]), k


def test_load_ecgfounder_with_classifier_head(ecgfounder):
    sd = {k: v.clone() for k, v in ecgfounder.model.state_dict().items()}
    sd["first_conv.conv.bias"] = torch.full_like(sd["first_conv.conv.bias"], 0.25)
    sd["dense.weight"] = torch.zeros(150, 1024)
    sd["dense.bias"] = torch.zeros(150)
    res = load_encoder_checkpoint(ecgfounder, {"model_state_dict": sd})
    assert res.ignored == ["dense.bias", "dense.weight"]
    assert torch.equal(ecgfounder.model.first_conv.conv.bias, sd["first_conv.conv.bias"])


def test_load_picks_encoder_by_modality_from_clip_checkpoint():
    # Both encoders with the same architecture, so only the modality can tell them apart.
    ppg, ecg = build_model("net1d-tiny"), build_model("net1d-ecg-tiny", kernel_size=3, use_do=True)
    ppg_sd, ecg_sd = _randomised(ppg.model), _randomised(ecg.model)
    clip = {**{f"ppg_encoder.{k}": v for k, v in ppg_sd.items()},
            **{f"ecg_encoder.{k}": v + 1 for k, v in ecg_sd.items()},
            "logit_scale": torch.tensor(2.0), "ppg_proj.0.weight": torch.zeros(32, 32)}
    target = build_model("net1d-tiny")
    res = load_encoder_checkpoint(target, {"model": clip})
    _assert_loaded(target.model, ppg_sd)
    assert "logit_scale" in res.ignored and "ecg_encoder.first_conv.conv.weight" in res.ignored
    target_ecg = build_model("net1d-ecg-tiny", kernel_size=3, use_do=True)
    load_encoder_checkpoint(target_ecg, {"model": clip})
    _assert_loaded(target_ecg.model, {k: v + 1 for k, v in ecg_sd.items()})
    # Same architecture on both sides and no modality hint: refuse to guess...
    with pytest.raises(ValueError, match="prefix="):
        load_encoder_checkpoint(build_model("net1d-tiny").model, clip)
    # ...unless told which.
    bare = build_model("net1d-tiny").model
    load_encoder_checkpoint(bare, clip, prefix="ecg_encoder.")
    _assert_loaded(bare, {k: v + 1 for k, v in ecg_sd.items()})


def test_wrong_architecture_raises_one_clear_error():
    small = build_model("net1d-small")
    wrong = {**build_model("net1d-tiny").model.state_dict(), "proj.weight": torch.zeros(4, 4)}
    with pytest.raises(ValueError) as ei:
        load_encoder_checkpoint(small, {"state_dict": wrong})
    msg = str(ei.value)
    assert "\n" not in msg
    assert "110 missing keys" in msg and "stage_list.2.block_list.1.bn1.weight" in msg
    assert "unexpected keys" in msg and "proj.weight" in msg
    assert "shape mismatches" in msg and "first_conv.conv.weight" in msg
    # strict=False loads what fits and reports the rest.
    res = load_encoder_checkpoint(small, wrong, strict=False)
    assert res.missing and res.unexpected == ["proj.weight"] and res.mismatched


class _Opaque:
    pass


def test_pickled_objects_refused(tmp_path):
    path = tmp_path / "bad.pth"
    torch.save({"obj": _Opaque()}, path)
    with pytest.raises(ValueError, match="weights_only"):
        load_encoder_checkpoint(build_model("net1d-tiny"), path)


# --- MACs ------------------------------------------------------------------------------------

def test_count_macs_by_hand():
    model = nn.Sequential(nn.Conv1d(4, 8, 3, padding=1, groups=2), nn.Flatten(), nn.Linear(8 * 10, 5))
    # conv: 8 out ch * 10 samples * (4/2) in ch * 3 taps; linear: 5 * 80.
    assert count_macs(model, (4, 10)) == 8 * 10 * 2 * 3 + 5 * 80
    assert count_macs(model, (3, 4, 10)) == 3 * (8 * 10 * 2 * 3 + 5 * 80)
    assert model.training                       # mode restored


def test_macs_anyppg_about_107M():
    macs = count_macs(_meta(ANYPPG_PPG), (1, 1250))
    assert 100e6 <= macs <= 115e6, macs


def test_macs_ecgfounder_about_1_14G(ecgfounder):
    # One real forward at 5000 samples (also checks the full network runs at its native length).
    macs = count_macs(ecgfounder.model, ecgfounder.input_shape)
    assert 1.10e9 <= macs <= 1.18e9, macs
