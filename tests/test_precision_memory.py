"""The device-specific attention path (fused SDPA), precision modes, ``model.half()`` through
the API, and the model-owned memory policy (estimates, auto-tiling, no mutation of the
caller's model). CUDA-only checks are skipped where there is no GPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from module_utils import load_repo_module

from stereosr.errors import InputError
from stereosr.infer import upscale, upscale_tensors
from stereosr.models import NAFSSR, NAFSSRConfig, build_nafssr, enable_tlc, forward_6ch, memory
from stereosr.models.blocks import SCAM

CUDA = torch.cuda.is_available()


plain = load_repo_module("benchmarks/plain_nafssr.py")
official = load_repo_module("benchmarks/official.py")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model(width: int = 8, blocks: int = 2, std: float = 0.3, seed: int = 0) -> NAFSSR:
    torch.manual_seed(seed)
    model = NAFSSR(NAFSSRConfig(width=width, num_blocks=blocks, scale=2))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=std)
    return enable_tlc(model, (6, 10)).eval()


def _pair(h: int, w: int, b: int = 1, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g), torch.rand(b, 3, h, w, generator=g)


def _maxdiff(a, b) -> float:
    return max(float((x.float() - y.float()).detach().abs().max()) for x, y in zip(a, b))


def _rel_l2(a, b) -> float:
    num = sum(float((x.float() - y.float()).pow(2).sum()) for x, y in zip(a, b))
    den = sum(float(y.float().pow(2).sum()) for y in b)
    return (num / den) ** 0.5


@pytest.fixture
def sdpa_everywhere(monkeypatch):
    """Route SCAM through the fused-attention path (the CUDA path) on this CPU too."""
    from stereosr.models import blocks

    monkeypatch.setattr(blocks, "attention_backend",
                        lambda device, dtype, exporting=False, compiling=False:
                        "explicit" if exporting else "sdpa")


# ---------------------------------------------------------------------------------------------
# the SDPA attention path


def test_attention_backend_per_device():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert memory.attention_backend(cpu, torch.float32) == "shared"
    assert memory.attention_backend(cpu, torch.bfloat16) == "sdpa"
    assert memory.attention_backend(cuda, torch.float32) == "sdpa"
    assert memory.attention_backend(cuda, torch.float16, exporting=True) == "explicit"
    assert memory.attention_backend(cpu, torch.float32, compiling=True) == "sdpa"
    # fused CUDA attention: whole images; CPU: cache-sized chunks
    assert memory.attention_rows(540, 960, 64, cuda, torch.float16) == 540
    assert memory.attention_rows(540, 960, 64, cpu, torch.float32) == 1


def test_sdpa_path_reproduces_golden_vectors(data_dir, golden, sdpa_everywhere):
    sd = torch.load(data_dir / "nafssr_t_x4_random.pth", weights_only=True)["params"]
    model = build_nafssr("T", 4)
    model.load_state_dict(sd, strict=True)
    enable_tlc(model).eval()
    with torch.inference_mode():
        sr = forward_6ch(model, torch.from_numpy(golden["lr_0"]))
    assert float((sr - torch.from_numpy(golden["sr_0"])).abs().max()) <= 1e-4


@pytest.mark.parametrize("mode", ["inference", "grad"])
def test_sdpa_path_matches_plain(mode, sdpa_everywhere):
    model = _model()
    ref_model = plain.plain_from_model(model).eval()
    left, right = _pair(13, 23, b=2)
    with torch.inference_mode():
        ref = ref_model(left, right)
    if mode == "inference":
        with torch.inference_mode():
            out = model(left, right)
        assert _maxdiff(out, ref) <= 1e-5
        return
    # training: SDPA's own backward against autograd through the plain model
    model.train()
    ref_model.train()
    outs, grads = [], []
    for m in (model, ref_model):
        m.zero_grad(set_to_none=True)
        o = m(left, right)
        (o[0].pow(2).sum() + 3 * o[1].sum()).backward()
        outs.append(o)
        grads.append({k: p.grad.clone() for k, p in m.named_parameters()})
    assert _maxdiff(outs[0], outs[1]) <= 1e-5
    for k in grads[1]:
        scale = float(grads[1][k].abs().max()) + 1e-6
        assert float((grads[0][k] - grads[1][k]).abs().max()) <= 1e-4 * scale, k


# ---------------------------------------------------------------------------------------------
# precision


@pytest.mark.skipif(official.find_reference() is None, reason="official NAFSSR code not found")
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_no_worse_than_official(dtype):
    """Relative L2 to float32 under the same autocast: ours <= the official code's."""
    model = _model(width=16, blocks=2, std=0.1)
    net = official.official_from(model, (6, 10))
    six = official.SixChannel(net)
    left, right = _pair(14, 30, seed=4)
    with torch.inference_mode():
        ref_ours, ref_off = model(left, right), six(left, right)
        assert _maxdiff(ref_ours, ref_off) <= 1e-4
        with torch.autocast("cpu", dtype=dtype):
            ours, off = model(left, right), six(left, right)
    assert all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in ours)
    assert _rel_l2(ours, ref_ours) <= 1.05 * _rel_l2(off, ref_off) + 1e-7


def test_precision_argument_checked():
    model = _model()
    left, right = _pair(6, 10)
    with pytest.raises(InputError, match="precision='fp8'"):
        upscale_tensors(model, left, right, precision="fp8")
    with pytest.raises(InputError, match="precision='bf16'"):
        upscale_tensors(_model().half(), left, right, precision="bf16")


@pytest.mark.parametrize("kw", [
    {"tile": 0}, {"tile": -2}, {"tile": 2.5}, {"tile": "4"}, {"tile": True},
    {"overlap": -1}, {"overlap": 2.5}, {"overlap": "4"},
    {"attention_chunk": 0}, {"attention_chunk": 2.5}, {"attention_chunk": "x"},
])
def test_row_arguments_checked(kw):
    """Nonsense row counts raise one InputError naming the parameter, never a bare
    TypeError/ValueError from deep inside, nor a silent truncation (2.5 rows, True)."""
    model = _model()
    left, right = _pair(6, 10)
    name = next(iter(kw))
    with pytest.raises(InputError, match=f"^{name}="):
        upscale_tensors(model, left, right, **kw)
    with pytest.raises(InputError, match=f"^{name}="):
        upscale(left[0].permute(1, 2, 0).numpy(), right[0].permute(1, 2, 0).numpy(), model, **kw)


@pytest.mark.parametrize("bad", [
    lambda t: t[0],                      # (3, h, w): no batch axis
    lambda t: t[:, :1],                  # one channel
    lambda t: (t * 255).to(torch.uint8),  # integer pixels would enter the model unscaled
    lambda t: t[0].permute(1, 2, 0).numpy(),
])
def test_tensor_views_checked(bad):
    model = _model()
    left, right = _pair(6, 10)
    with pytest.raises(InputError, match="^left view must be a float \\(B, 3, h, w\\) tensor"):
        upscale_tensors(model, bad(left), right)


@pytest.mark.parametrize("scale_", [255.0, 65535.0, -1.0])
def test_float_arrays_outside_unit_range_refused(scale_):
    """A float image on a 0-255 scale would come out saturated (clipped to 1) without a word."""
    model = _model()
    left, right = (t[0].permute(1, 2, 0).numpy() for t in _pair(6, 10))
    with pytest.raises(InputError, match="^right view is float .*divide 8-bit values by 255"):
        upscale(left, right * scale_, model)
    # slight overshoot, as from an unclipped bicubic LR, is still accepted and clipped
    out = upscale(left, np.clip(right * 1.1 - 0.05, -0.05, 1.05), model)
    assert out[1].min() >= 0.0 and out[1].max() <= 1.0


@pytest.mark.parametrize("bad", [42, torch.nn.Linear(2, 2), {"scale": 2}])
def test_model_that_is_not_a_model_refused(bad):
    left, right = _pair(6, 10)
    arrays = [t[0].permute(1, 2, 0).numpy() for t in (left, right)]
    with pytest.raises(InputError, match="^model=.* is not a stereo SR model"):
        upscale(*arrays, bad)
    with pytest.raises(InputError, match="^model=.* is not a stereo SR model"):
        upscale_tensors(bad, left, right)


@pytest.mark.parametrize("device", ["meta", "cuda:0", "gpu"])
def test_device_not_matching_a_loaded_model_refused(device):
    """A loaded model is never moved; a ``device`` it is not on is an error, not ignored."""
    model = _model()
    arrays = [t[0].permute(1, 2, 0).numpy() for t in _pair(6, 10)]
    with pytest.raises(InputError, match="device"):
        upscale(*arrays, model, device=device)
    assert next(model.parameters()).device.type == "cpu"
    assert upscale(*arrays, model, device="cpu")[0].shape == (12, 20, 3)
    assert upscale(*arrays, model, device="auto")[0].shape == (12, 20, 3)


@pytest.mark.parametrize("setter, bad, name", [
    ("set_attention_chunk", 0, "rows"), ("set_attention_chunk", -1, "rows"),
    ("set_attention_chunk", 2.5, "rows"), ("set_attention_chunk", "x", "rows"),
    ("set_attention_chunk", True, "rows"),
    ("set_attention_budget", 0, "megabytes"), ("set_attention_budget", "x", "megabytes"),
    ("set_attention_budget", float("nan"), "megabytes"),
    ("set_attention_budget", float("inf"), "megabytes"),
])
def test_attention_settings_checked_when_set(setter, bad, name):
    """Refused at once with one InputError (0 silently meant 'automatic', -1 one row, and a
    string failed later inside the forward pass); the model keeps its settings."""
    model = _model()
    with pytest.raises(InputError, match=f"^{name}="):
        getattr(model, setter)(bad)
    assert all(m.chunk_rows is None and m.attention_budget_mb is None
               for m in model.modules() if isinstance(m, SCAM))
    with pytest.raises(InputError, match="^attention_chunk="), \
            memory.attention_chunk(bad if name == "rows" else 0):
        pass


def test_precisions_through_the_api():
    model = _model()
    left, right = _pair(13, 23)
    ref = upscale_tensors(model, left, right)
    for p in ("tf32", "bf16"):
        out = upscale_tensors(model, left, right, precision=p)
        assert all(t.dtype == torch.float32 for t in out)
        assert _rel_l2(out, ref) <= (1e-7 if p == "tf32" else 2e-2)


def test_half_model_through_the_api():
    """``model.half()`` works with float32 and uint8 inputs: inputs follow the model."""
    model = _model(std=0.1)
    half = _model(std=0.1).half()
    g = np.random.default_rng(0)
    left = (g.random((13, 23, 3)) * 255).astype(np.uint8)
    right = (g.random((13, 23, 3)) * 255).astype(np.uint8)
    ref = upscale(left, right, model)
    out = upscale(left, right, half)
    assert out[0].dtype == np.uint8 and out[0].shape == ref[0].shape
    assert max(int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in zip(out, ref)) <= 2
    assert next(half.parameters()).dtype == torch.float16  # the model is not converted


def test_fp16_normalisations_guarded():
    """Large features: LayerNorm variance, softmax and TLC means would overflow in float16;
    they are computed in float32, so a half model gives finite, close outputs."""
    model = _model(std=0.1)
    with torch.no_grad():
        model.intro.weight.mul_(300.0)
        model.intro.bias.mul_(300.0)
    left, right = _pair(13, 23)
    with torch.inference_mode():
        ref = model(left, right)
        half = _model(std=0.1)
        half.load_state_dict(model.state_dict())
        half = half.half()
        out = half(left.half(), right.half())
    assert all(torch.isfinite(t).all() for t in out)
    assert _rel_l2(out, ref) <= 2e-2


def test_overflowing_half_precision_is_redone_in_fp32():
    model = _model(std=0.1)
    with torch.no_grad():
        model.intro.weight.mul_(1e6)  # features beyond float16's range
    left, right = _pair(13, 23)
    ref = upscale_tensors(model, left, right, precision="fp32")
    assert all(torch.isfinite(t).all() for t in ref)
    with pytest.warns(RuntimeWarning, match="redone in fp32"):
        out = upscale_tensors(model, left, right, precision="fp16")
    assert _maxdiff(out, ref) == 0.0


# ---------------------------------------------------------------------------------------------
# memory policy


def test_upscale_leaves_the_model_unchanged():
    model = _model()
    left, right = _pair(13, 23)
    with torch.inference_mode():
        ref = model(left, right)
    out = upscale_tensors(model, left, right, attention_chunk=3)
    assert _maxdiff(out, ref) <= 1e-6
    for m in model.modules():
        if isinstance(m, SCAM):
            assert m.chunk_rows is None and m.attention_budget_mb is None
    model.set_attention_chunk(5)
    upscale_tensors(model, left, right, attention_chunk=2)
    assert all(m.chunk_rows == 5 for m in model.modules() if isinstance(m, SCAM))


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_training_mode_model_runs_in_eval_mode_and_stays_in_training_mode(precision):
    """A model still in training mode (stochastic depth on, TLC off) gives the eval-mode
    result, twice the same, and is handed back in training mode, submodules included."""
    torch.manual_seed(0)
    model = NAFSSR(NAFSSRConfig(width=8, num_blocks=4, scale=2, drop_path=0.5))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.1)
    model = enable_tlc(model, (6, 10)).eval()
    left, right = _pair(6, 10)
    ref = upscale_tensors(model, left, right, precision=precision)
    model.train()
    model.body[1].eval()  # a mixed state is handed back as it was
    flags = [m.training for m in model.modules()]
    out = [upscale_tensors(model, left, right, precision=precision) for _ in range(2)]
    assert _maxdiff(out[0], ref) == 0.0 and _maxdiff(out[1], ref) == 0.0
    assert [m.training for m in model.modules()] == flags
    with pytest.raises(InputError):
        upscale_tensors(model, left, right[..., :5])
    assert [m.training for m in model.modules()] == flags


def test_memory_estimate_follows_the_policy():
    model = build_nafssr("S", 4)
    est = model.estimate_memory
    assert est(128, 128) < est(256, 128) < est(256, 256)
    assert est(128, 128, batch=2) > est(128, 128)
    # CPU: cache-sized chunks; CUDA fused attention: no W x W matrix at all
    cpu = est(540, 960, device="cpu")
    gpu = est(540, 960, device="cuda")
    assert gpu < cpu
    with memory.attention_chunk(540):  # all rows at once (the unfused worst case)
        assert est(540, 960, device="cpu") > cpu + 540 * 960 * 960 * 4
    # half compute lowers the estimate
    assert est(540, 960, device="cuda", compute_dtype=torch.float16) < gpu


@pytest.mark.parametrize("args, kw, name", [
    ((-1, 10), {}, "h"), ((6, 2.5), {}, "w"), (("6", 10), {}, "h"), ((6, 10), {"batch": 0}, "batch"),
    ((6, 10), {"dtype": "float16"}, "dtype"), ((6, 10), {"compute_dtype": torch.int8}, "compute_dtype"),
    ((6, 10), {"device": "gpu"}, "device"),
])
def test_memory_estimate_arguments_checked(args, kw, name):
    """No negative byte counts, no TypeError/RuntimeError from inside: one InputError."""
    with pytest.raises(InputError, match=f"^{name}="):
        _model().estimate_memory(*args, **kw)


def test_auto_tiling_asks_the_model(monkeypatch):
    up = sys.modules["stereosr.infer.upscale"]
    model = _model()
    left, right = _pair(40, 23)
    need = model.estimate_memory(40, 23)
    monkeypatch.setattr(up, "available_memory_bytes", lambda device: need // 2)
    calls = []
    real = up.tiled_forward

    def spy(fn, l_, r_, scale, tile, overlap=24):
        calls.append(tile)
        return real(fn, l_, r_, scale, tile, overlap)

    monkeypatch.setattr(up, "tiled_forward", spy)
    out = upscale_tensors(model, left, right, overlap=4)
    assert calls and 8 <= calls[0] < 40
    assert model.estimate_memory(calls[0] + 8, 23) <= need // 2
    with torch.inference_mode():
        ref = model(left, right)
    assert _maxdiff(out, ref) <= 0.05  # blended bands: close, not identical


# ---------------------------------------------------------------------------------------------
# CUDA (skipped without a GPU)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("precision", ["fp32", "tf32", "bf16", "fp16"])
def test_cuda_matches_cpu(precision):
    model = _model(width=16, std=0.1)
    left, right = _pair(30, 70, b=2)
    with torch.inference_mode():
        ref = model(left, right)
    gpu = _model(width=16, std=0.1).cuda()
    out = upscale_tensors(gpu, left, right, precision=precision, auto_tile=False)
    assert out[0].device.type == "cuda"
    tol = {"fp32": 1e-4, "tf32": 5e-3, "bf16": 2e-2, "fp16": 3e-3}[precision]
    assert _rel_l2([o.cpu() for o in out], ref) <= tol


@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
def test_cuda_training_step_matches_cpu():
    model = _model(width=16, std=0.1).train()
    gpu = _model(width=16, std=0.1).cuda().train()
    left, right = _pair(12, 30, b=2)
    grads = []
    from stereosr.infer.precision import precision_context

    for m, dev in ((model, "cpu"), (gpu, "cuda")):
        with precision_context("fp32", dev):  # no TF32 convolutions
            o = m(left.to(dev), right.to(dev))
            (o[0].pow(2).mean() + o[1].pow(2).mean()).backward()
        grads.append({k: p.grad.cpu() for k, p in m.named_parameters()})
    for k in grads[0]:
        scale = float(grads[0][k].abs().max()) + 1e-6
        assert float((grads[0][k] - grads[1][k]).abs().max()) <= 1e-3 * scale, k


@pytest.mark.parametrize("grad", [False, True])
def test_compiles_to_one_graph_on_the_sdpa_path(grad):
    """Under torch.compile the model takes SDPA on whole images, in one graph (no breaks)."""
    model = _model()
    left, right = _pair(13, 23)
    with torch.inference_mode():
        ref = model(left, right)
    compiled = torch.compile(model, backend="eager", fullgraph=True, dynamic=False)
    if grad:
        model.train()
        out = compiled(left, right)
        (out[0].sum() + out[1].sum()).backward()
        assert all(p.grad is not None for p in model.parameters())
        model.eval()
    else:
        with torch.no_grad():
            out = compiled(left, right)
    assert _maxdiff(out, ref) <= 1e-5


@pytest.mark.parametrize("tlc", [True, False])
def test_gpu_layout_of_the_inplace_path(monkeypatch, tlc):
    """The in-place NAFBlock without the ones column (the GPU layout: aligned GEMM operands,
    separate bias addition), run on this CPU, against the plain model; also under autocast."""
    from stereosr.models import blocks, disable_tlc

    model = _model()
    if not tlc:
        disable_tlc(model)
    ref_model = plain.plain_from_model(model, tlc=tlc).eval()
    left, right = _pair(13, 23, b=2)
    with torch.inference_mode():
        ref = ref_model(left, right)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            ones_bf16 = model(left, right)
        monkeypatch.setattr(blocks, "_bias_column", lambda t: False)
        out = model(left, right)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(left, right)
    assert _maxdiff(out, ref) <= 1e-5
    assert _rel_l2(out_bf16, ref) <= 2 * _rel_l2(ones_bf16, ref) + 1e-6


@pytest.mark.parametrize("prec,tol", [("fp16", 1e-3), ("bf16", 5e-3)])
def test_cpu_autocast_of_the_packaged_model_stays_finite(motorcycle, prec, tol):
    """The packaged model on a Motorcycle crop under CPU autocast: SCAM's logits reach values
    whose exponentials overflow float16, so half-precision queries must take the attention
    path with float32 softmax statistics (this once gave NaN output in fp16)."""
    from stereosr.degrade import imresize
    from stereosr.infer.precision import precision_context
    from stereosr.models.checkpoint import load_model
    from stereosr.models.registry import DEFAULT_MODEL, MODELS

    model = load_model(MODELS[DEFAULT_MODEL].path, device="cpu").eval()
    left, right, _ = motorcycle
    lr = [torch.from_numpy(imresize(v[:160, :256], 0.25).astype(np.float32) / 255.0)
          .permute(2, 0, 1)[None] for v in (left, right)]
    with torch.inference_mode():
        ref = model(*lr)
        with precision_context(prec, torch.device("cpu")):
            out = model(*lr)
    assert all(bool(torch.isfinite(o).all()) for o in out)
    assert _rel_l2(out, ref) <= tol


def test_cpu_fp16_autocast_with_large_logits_is_finite():
    """Logits far beyond float16's exp range (|A| > 11) under CPU fp16 autocast."""
    from stereosr.infer.precision import precision_context

    model = _model()
    with torch.no_grad():
        for blk in model.body:
            blk.module.fusion.l_proj1.weight.mul_(40.0)
    left, right = _pair(9, 20, b=2)
    with torch.inference_mode():
        ref = model(left, right)
        with precision_context("fp16", torch.device("cpu")):
            out = model(left, right)
    assert all(bool(torch.isfinite(o).all()) for o in out)
    assert _rel_l2(out, ref) <= 1e-2
