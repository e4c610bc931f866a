"""The optimised NAFSSR code paths against the plain reference implementation
(benchmarks/plain_nafssr.py): inference (in place and out of place), training gradients,
activation checkpointing, attention chunking, the softmax fallback and half precision."""

from __future__ import annotations

import pytest
import torch
from module_utils import load_repo_module

from stereosr.models import NAFSSR, NAFSSRConfig, build_nafssr, enable_tlc
from stereosr.models.blocks import SCAM, NAFBlock, StereoBlock
from stereosr.models.pooling import box_mean, local_avg_pool, local_mean_full, replicate_to

plain = load_repo_module("benchmarks/plain_nafssr.py")


pytestmark = pytest.mark.usefixtures("one_thread")


def _random_model(width: int = 8, blocks: int = 2, scale: int = 2, std: float = 0.3,
                  seed: int = 0, tlc: tuple[int, int] | None = (6, 10)) -> NAFSSR:
    """Tiny model with every parameter random (beta/gamma too), TLC window 9 x 15."""
    torch.manual_seed(seed)
    model = NAFSSR(NAFSSRConfig(width=width, num_blocks=blocks, scale=scale))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    if tlc is not None:
        enable_tlc(model, tlc)
    return model.eval()


def _pair(h: int, w: int, b: int = 1, dtype: torch.dtype = torch.float32, seed: int = 1
          ) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(b, 3, h, w, generator=g, dtype=dtype),
            torch.rand(b, 3, h, w, generator=g, dtype=dtype))


def _maxdiff(a: tuple[torch.Tensor, ...], b: tuple[torch.Tensor, ...]) -> float:
    return max(float((x - y).detach().abs().max()) for x, y in zip(a, b))


# Sizes relative to the 9 x 15 TLC window: inside it, larger in both, larger in width only,
# larger in height only.
SIZES = [(6, 10), (13, 23), (7, 31), (17, 9)]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("mode", ["inference_mode", "no_grad", "grad"])
def test_inference_matches_plain(size, mode):
    model = _random_model()
    ref_model = plain.plain_from_model(model).eval()
    left, right = _pair(*size, b=2)
    keep = (left.clone(), right.clone())
    with torch.inference_mode():
        ref = ref_model(left, right)
    if mode == "inference_mode":
        with torch.inference_mode():
            out = model(left, right)
    elif mode == "no_grad":
        with torch.no_grad():
            out = model(left, right)
    else:
        out = tuple(t.detach() for t in model(left, right))
    assert _maxdiff(out, ref) <= 1e-5
    assert all(t.is_contiguous() for t in out)
    assert torch.equal(left, keep[0]) and torch.equal(right, keep[1])  # inputs untouched


def test_global_pooling_model_matches_plain():
    model = _random_model(tlc=None)
    ref_model = plain.plain_from_model(model).eval()
    left, right = _pair(13, 23)
    with torch.inference_mode():
        assert _maxdiff(model(left, right), ref_model(left, right)) <= 1e-5


def test_modules_keep_nchw_interface():
    torch.manual_seed(3)
    c = 8
    for ours, ref in [(NAFBlock(c), plain.PlainNAFBlock(c, (5, 7))),
                      (SCAM(c), plain.PlainSCAM(c))]:
        for p in ours.parameters():
            torch.nn.init.normal_(p, std=0.3)
        if isinstance(ours, NAFBlock):
            enable_tlc(ours, (4, 5))  # kernel (6, 7): local pooling on 9 x 11 maps
            ref.sca[0].kernel = (6, 7)
        ref.load_state_dict(ours.state_dict())
        x = torch.randn(2, c, 9, 11)
        y = torch.randn(2, c, 9, 11)
        with torch.no_grad():
            if isinstance(ours, NAFBlock):
                assert torch.allclose(ours(x), ref(x), atol=1e-5)
            else:
                assert _maxdiff(ours(x, y), ref(x, y)) <= 1e-5
    blk = StereoBlock(c)
    out = blk(torch.randn(1, c, 5, 6), torch.randn(1, c, 5, 6))
    assert out[0].shape == (1, c, 5, 6) and out[1].shape == (1, c, 5, 6)


def _grads(model: torch.nn.Module, left: torch.Tensor, right: torch.Tensor,
           weights: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    l_, r_ = left.clone().requires_grad_(), right.clone().requires_grad_()
    out = model(l_, r_)
    loss = (out[0] * weights[0]).sum() + (out[1] * weights[1]).sum()
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters()}
    grads["<left>"], grads["<right>"] = l_.grad, r_.grad
    return grads


@pytest.mark.parametrize("tlc", [None, (6, 10)])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_training_gradients_match_plain(tlc, checkpointing):
    model = _random_model(tlc=tlc).double().train()
    ref_model = plain.plain_from_model(model).double().train()
    model.set_checkpointing(checkpointing)
    left, right = _pair(13, 23, b=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(5)
    weights = (torch.randn(2, 3, 26, 46, generator=g, dtype=torch.float64),
               torch.randn(2, 3, 26, 46, generator=g, dtype=torch.float64))
    ours = _grads(model, left, right, weights)
    ref = _grads(ref_model, left, right, weights)
    assert set(ours) == set(ref)
    for k in ref:
        scale = float(ref[k].abs().max()) + 1e-12
        assert float((ours[k] - ref[k]).abs().max()) <= 1e-9 * max(1.0, scale), k


# Multipliers of l_proj1 for the attention paths: 1 -> logits bounded (exp without shift),
# 100 -> shifted exponentials, 300 -> logits too spread: softmax fallback.
SHARPNESS = {"bounded": 1.0, "shifted": 100.0, "sharp": 300.0}


@pytest.mark.parametrize("case", ["chunked", "shifted", "sharp", "sharp_chunked"])
def test_training_gradients_special_attention_paths(case):
    """Row-chunked attention, shifted exponentials and the softmax fallback of the
    hand-written backward."""
    model = _random_model(tlc=None).double()
    with torch.no_grad():
        for blk in model.body:
            blk.module.fusion.l_proj1.weight.mul_(SHARPNESS.get(case.split("_")[0], 1.0))
    ref_model = plain.plain_from_model(model).double().train()
    model.train()
    if case.endswith("chunked"):
        model.set_attention_chunk(5)
    left, right = _pair(13, 23, b=2, dtype=torch.float64)
    g = torch.Generator().manual_seed(6)
    weights = (torch.randn(2, 3, 26, 46, generator=g, dtype=torch.float64),
               torch.randn(2, 3, 26, 46, generator=g, dtype=torch.float64))
    ours = _grads(model, left, right, weights)
    ref = _grads(ref_model, left, right, weights)
    for k in ref:
        scale = float(ref[k].abs().max()) + 1e-12
        assert float((ours[k] - ref[k]).abs().max()) <= 1e-8 * max(1.0, scale), k


def test_drop_path_keeps_or_skips_whole_block():
    model = build_nafssr("T", 2, width=8, num_blocks=3, drop_path=0.5).train()
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.3)
    left, right = _pair(6, 8)
    torch.manual_seed(11)
    a = model(left, right)
    torch.manual_seed(11)
    b = model(left, right)
    assert _maxdiff(a, b) == 0.0  # one draw per block from torch's RNG: reproducible


def test_attention_chunking_is_exact():
    model = _random_model()
    left, right = _pair(13, 23, b=2)
    with torch.inference_mode():
        ref = model(left, right)
        model.set_attention_chunk(3)
        chunked = model(left, right)
        model.set_attention_chunk(None)
        model.set_attention_budget(0.01)  # 10 KiB: a handful of rows per chunk
        budget = model(left, right)
    assert _maxdiff(chunked, ref) <= 1e-6
    assert _maxdiff(budget, ref) <= 1e-6
    from stereosr.models.memory import attention_chunk, attention_rows

    rows = attention_rows(26, 23, 8, torch.device("cpu"), torch.float32, budget_mb=0.01)
    assert 1 <= rows < 26 and rows == int(0.01 * 2**20) // (23 * 23 * 4)
    with pytest.raises(ValueError):
        model.set_attention_budget(0)
    model.set_attention_budget(None)
    # A per-call override: exact, and nothing is stored on the model.
    with torch.inference_mode(), attention_chunk(2):
        assert attention_rows(26, 23, 8, torch.device("cpu"), torch.float32) == 2
        ctx = model(left, right)
    assert _maxdiff(ctx, ref) <= 1e-6
    assert all(m.chunk_rows is None and m.attention_budget_mb is None
               for m in model.modules() if isinstance(m, SCAM))


@pytest.mark.parametrize("case", ["shifted", "sharp"])
def test_large_logits_match_plain(case):
    """Logits beyond the shift-free bound use shifted exponentials; spread over hundreds of
    nats the shared exponential would underflow and the softmax fallback takes over."""
    model = _random_model(blocks=1)
    fusion = model.body[0].module.fusion
    with torch.no_grad():
        fusion.l_proj1.weight.mul_(SHARPNESS[case])
    ref_model = plain.plain_from_model(model).eval()
    left, right = _pair(13, 23)
    with torch.inference_mode():
        ref = ref_model(left, right)
        out = model(left, right)
        model.set_attention_chunk(4)
        chunked = model(left, right)
    assert all(torch.isfinite(t).all() for t in out)
    assert _maxdiff(out, ref) <= 1e-4 * (1 + max(float(t.abs().max()) for t in ref))
    assert _maxdiff(chunked, out) <= 1e-5
    # the intended path was taken
    x = torch.randn(2, 13, 23, 8)
    with torch.no_grad():
        q, v = fusion._projections(x)
        q_l, q_r = q.view(2, 13, 23, 8).unbind(0)
        v_l, v_r = v.view(2, 13, 23, 8).unbind(0)
        from stereosr.models.blocks import _logits_bounded
        assert not _logits_bounded(q_l, q_r)
        res = SCAM._attend(q_l, q_r, v_l, v_r, False)
    assert (res is None) == (case == "sharp")


def test_shared_exponential_attention_matches_softmax():
    torch.manual_seed(2)
    q_l, q_r = torch.randn(5, 7, 4) * 1.5, torch.randn(5, 7, 4) * 1.5
    v_l, v_r = torch.randn(5, 7, 4), torch.randn(5, 7, 4)
    attn = q_l @ q_r.transpose(1, 2)
    assert float(attn.abs().max()) < 50  # both forms are valid here
    r2l = torch.softmax(attn, -1) @ v_r
    l2r = torch.softmax(attn.transpose(1, 2), -1) @ v_l
    for bounded in (False, True):
        res = SCAM._attend(q_l, q_r, v_l, v_r, False, bounded)
        assert res is not None
        num_l, den_l, num_r, den_r = res
        assert torch.allclose(num_l / den_l, r2l, atol=1e-5)
        assert torch.allclose(num_r / den_r, l2r, atol=1e-5)


@pytest.mark.parametrize("size", [(6, 10), (13, 23), (7, 31), (17, 9), (9, 15), (10, 16)])
def test_local_mean_forms_agree(size):
    x = torch.randn(2, 3, *size, dtype=torch.float64)
    kernel = (9, 15)
    ref = plain.PlainPool(kernel)(x).expand_as(x)
    assert torch.allclose(local_avg_pool(x, kernel), ref, atol=1e-12)
    assert torch.allclose(local_mean_full(x, kernel), ref, atol=1e-12)
    m = box_mean(x.permute(0, 2, 3, 1), kernel, dims=(1, 2))
    full = replicate_to(replicate_to(m, 2, size[1]), 1, size[0]).permute(0, 3, 1, 2)
    assert torch.allclose(full, ref, atol=1e-12)


@pytest.mark.parametrize("how", ["autocast", "cast"])
def test_bfloat16_inference_is_finite_and_close(how):
    model = _random_model(width=16, blocks=3, std=0.15)
    left, right = _pair(13, 40)
    with torch.inference_mode():
        ref = model(left, right)
        if how == "autocast":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model(left, right)
        else:
            m16 = _random_model(width=16, blocks=3, std=0.15).to(torch.bfloat16)
            out = m16(left.bfloat16(), right.bfloat16())
    span = max(float(t.abs().max()) for t in ref)
    for t in out:
        assert torch.isfinite(t).all()
    err = _maxdiff(tuple(t.float() for t in out), ref)
    assert err <= 0.05 * span, (err, span)


def test_bfloat16_sharp_attention_stays_finite():
    model = _random_model(blocks=1)
    with torch.no_grad():
        model.body[0].module.fusion.l_proj1.weight.mul_(500.0)
    model = model.to(torch.bfloat16)
    left, right = _pair(13, 23, dtype=torch.bfloat16)
    with torch.inference_mode():
        out = model(left, right)
    assert all(torch.isfinite(t).all() for t in out)


def test_golden_vectors_still_reproduced(data_dir, golden):
    from stereosr.models import forward_6ch

    sd = torch.load(data_dir / "nafssr_t_x4_random.pth", weights_only=True)["params"]
    model = build_nafssr("T", 4)
    model.load_state_dict(sd, strict=True)
    enable_tlc(model).eval()
    with torch.inference_mode():
        for i in range(3):
            sr = forward_6ch(model, torch.from_numpy(golden[f"lr_{i}"]))
            assert float((sr - torch.from_numpy(golden[f"sr_{i}"])).abs().max()) <= 1e-4


@pytest.mark.parametrize("band_pixels", [1, 200, 500, 10**6])
@pytest.mark.parametrize("pool", ["local", "global"])
@pytest.mark.parametrize("attention", ["bounded", "sharp"])
def test_cpu_band_by_band_inference_matches_plain(monkeypatch, band_pixels, pool, attention):
    """The CPU in-place form runs NAFBlocks and SCAM band by band (one row, a few rows with a
    short last band, the whole image): same result as the plain reference, halo rows and
    image borders of the depthwise conv included, with local (TLC) and global pooling and
    with the softmax fallback of SCAM."""
    from stereosr.models import memory

    monkeypatch.setattr(memory, "CPU_BAND_PIXELS", band_pixels)
    calls = {"naf": 0, "scam": 0}
    for cls, key in ((NAFBlock, "naf"), (SCAM, "scam")):
        orig = cls._forward_banded

        def spy(self, x, _orig=orig, _key=key):
            calls[_key] += 1
            return _orig(self, x)

        monkeypatch.setattr(cls, "_forward_banded", spy)
    model = _random_model(tlc=(6, 10) if pool == "local" else None).double()
    if attention == "sharp":
        with torch.no_grad():
            for blk in model.body:
                blk.module.fusion.l_proj1.weight.mul_(SHARPNESS["sharp"])
    ref_model = plain.plain_from_model(model).double().eval()
    left, right = _pair(13, 23, b=2, dtype=torch.float64)
    with torch.inference_mode():
        ref = ref_model(left, right)
        out = model(left, right)
    assert calls == {"naf": 2, "scam": 2}
    scale = max(float(r.abs().max()) for r in ref)
    assert _maxdiff(out, ref) <= 1e-10 * max(1.0, scale)


def test_empty_batch_without_autograd_gives_empty_views():
    model = _random_model()
    left, right = _pair(5, 7, b=0)
    with torch.inference_mode():
        out = model(left, right)
    assert [tuple(t.shape) for t in out] == [(0, 3, 10, 14)] * 2
