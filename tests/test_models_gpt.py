"""GPT on the causal graph: equal to nanoGPT written plainly, cache equal to recomputation."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from graphformer import GraphAttention, GraphformerLayer
from graphformer.models import GPT, GPTConfig

torch.set_num_threads(1)


def small(**kw):
    base = dict(vocab_size=11, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0, bias=False)
    base.update(kw)
    return GPTConfig(**base)


def reference_logits(model: GPT, idx, allowed=None):
    """nanoGPT's forward written out by hand (explicit softmax) with the weights of ``model``.

    ``allowed`` [T, T] bool: which edges j -> i exist (default: causal).
    """
    cfg = model.config
    B, T = idx.shape
    H, d = cfg.n_head, cfg.n_embd
    if allowed is None:
        allowed = torch.ones(T, T, dtype=torch.bool).tril()
    x = model.wte.weight[idx] + model.wpe.weight[:T]

    def ln(t, norm):
        return F.layer_norm(t, (d,), norm.weight, norm.bias, 1e-5)

    for blk in model.blocks:
        a = blk.self_attn
        h = ln(x, blk.norm1)
        q, k, v = (
            F.linear(h, lin.weight, lin.bias).view(B, T, H, d // H).transpose(1, 2)
            for lin in (a.q_proj, a.k_proj, a.v_proj)
        )
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // H)
        att = att.masked_fill(~allowed, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = x + F.linear(y, a.out_proj.weight, a.out_proj.bias)
        ff = blk.feedforward
        h = ln(x, blk.norm2)
        x = x + F.linear(F.gelu(F.linear(h, ff.linear1.weight, ff.linear1.bias)), ff.linear2.weight, ff.linear2.bias)
    return F.linear(ln(x, model.ln_f), model.wte.weight)


@pytest.mark.parametrize("bias", [False, True])
def test_gpt_equals_plain_nanogpt(bias):
    torch.manual_seed(0)
    model = GPT(small(bias=bias)).eval()
    idx = torch.randint(11, (3, 16))
    targets = torch.randint(11, (3, 16))
    logits, loss = model(idx, targets)
    ref = reference_logits(model, idx)
    assert logits.shape == (3, 16, 11)
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss, F.cross_entropy(ref.flatten(0, 1), targets.flatten()), atol=1e-5, rtol=1e-5)
    last, none = model(idx)
    assert none is None and last.shape == (3, 1, 11)
    torch.testing.assert_close(last, ref[:, -1:], atol=1e-5, rtol=1e-5)


def test_ignore_index_and_gradients_reach_every_parameter():
    torch.manual_seed(1)
    model = GPT(small(bias=True))
    idx = torch.randint(11, (2, 8))
    targets = idx.clone()
    targets[:, :4] = -1
    logits, loss = model(idx, targets)
    expected = F.cross_entropy(logits[:, 4:].flatten(0, 1), targets[:, 4:].flatten())
    torch.testing.assert_close(loss, expected)
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_nanogpt_size_init_and_tied_head():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=64, n_layer=4, n_head=4, n_embd=128, dropout=0.0, bias=False))
    assert model.lm_head.weight is model.wte.weight
    # nanoGPT prints "number of parameters: 0.80M" for this recipe
    assert model.num_params() == 4 * 12 * 128 * 128 + 65 * 128 + 9 * 128
    std_res = 0.02 / math.sqrt(2 * 4)
    for blk in model.blocks:
        assert abs(blk.self_attn.q_proj.weight.std().item() - 0.02) < 0.002
        assert abs(blk.self_attn.out_proj.weight.std().item() - std_res) < 0.001
        assert abs(blk.feedforward.linear2.weight.std().item() - std_res) < 0.001
        assert abs(blk.feedforward.linear1.weight.std().item() - 0.02) < 0.001
    assert abs(model.wte.weight.std().item() - 0.02) < 0.002


def test_param_groups_decay_only_matrices():
    model = GPT(small(bias=True))
    decay, no_decay = model.param_groups(0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() >= 2 for p in decay["params"]) and all(p.dim() < 2 for p in no_decay["params"])
    ids = [id(p) for p in decay["params"] + no_decay["params"]]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    opt = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.99)


def test_cpu_optimizer_is_fused_and_steps_as_the_loop():
    """On CPU the fused AdamW kernel: the same update as the per-parameter loop (nanoGPT's CPU choice)."""
    torch.manual_seed(3)
    fused_model = GPT(small())
    loop_model = GPT(small())
    loop_model.load_state_dict(fused_model.state_dict())
    fused = fused_model.configure_optimizers(0.1, 1e-2, (0.9, 0.99), "cpu")
    loop = torch.optim.AdamW(loop_model.param_groups(0.1), lr=1e-2, betas=(0.9, 0.99), foreach=False)
    assert fused.defaults["fused"] is True
    for _ in range(4):
        x, y = torch.randint(11, (4, 16)), torch.randint(11, (4, 16))
        for model, opt in ((fused_model, fused), (loop_model, loop)):
            opt.zero_grad()
            model(x, y)[1].backward()
            opt.step()
    for a, b in zip(fused_model.parameters(), loop_model.parameters()):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------- cache
@pytest.mark.parametrize("attention,window", [("full", None), ("window", 3), ("window", 0)])
def test_cached_logits_equal_recomputation(attention, window):
    torch.manual_seed(2)
    model = GPT(small(attention=attention, window=window)).eval()
    idx = torch.randint(11, (2, 16))
    full, _ = model(idx, idx)
    logits, cache = model.forward_cached(idx[:, :5])  # prefill, then one node at a time
    steps = [logits]
    for t in range(5, 16):
        logits, cache = model.forward_cached(idx[:, t : t + 1], cache)
        steps.append(logits)
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 16
    kept = 16 if window is None else window
    assert all(k.shape == (2, 2, kept, 8) and v.shape == k.shape for k, v in cache.layers)


@pytest.mark.parametrize("attention,window", [("full", None), ("window", 4)])
def test_cached_generation_equals_uncached(attention, window):
    torch.manual_seed(3)
    model = GPT(small(attention=attention, window=window)).eval()
    prompt = torch.randint(11, (2, 3))
    # 30 new tokens: past block_size 16, where the positions shift every step
    fast = model.generate(prompt, 30, temperature=0)
    slow = model.generate(prompt, 30, temperature=0, use_cache=False)
    assert fast.shape == (2, 33)
    assert torch.equal(fast[:, :3], prompt) and torch.equal(fast, slow)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    s1 = model.generate(prompt, 12, temperature=0.8, top_k=5, generator=g1)
    s2 = model.generate(prompt, 12, temperature=0.8, top_k=5, generator=g2, use_cache=False)
    assert torch.equal(s1, s2)
    assert torch.equal(model.generate(prompt, 10, top_k=1), model.generate(prompt, 10, temperature=0))


def test_layer_step_equals_causal_forward():
    torch.manual_seed(4)
    for module in (GraphAttention(16, 4, bias=True), GraphformerLayer(16, 4, 32, 0.0, norm_first=True)):
        module.eval()
        x = torch.randn(2, 7, 16)
        ref = module(x, causal=True)
        out, (k, v) = module.step(x)
        torch.testing.assert_close(out, ref, atol=1e-6, rtol=1e-5)
        assert k.shape == v.shape == (2, 4, 7, 4)
        past, outs = None, []
        for t in range(7):
            o, past = module.step(x[:, t : t + 1], past)
            outs.append(o)
        torch.testing.assert_close(torch.cat(outs, 1), ref, atol=1e-6, rtol=1e-5)


def test_step_rejects_scores_without_fused_path():
    with pytest.raises(ValueError, match="dot"):
        GraphAttention(8, 2, score="additive").step(torch.randn(1, 3, 8))
    with pytest.raises(ValueError, match="window"):
        GraphAttention(8, 2).step(torch.randn(1, 3, 8), window=-1)


# ---------------------------------------------------------------- window
@pytest.mark.parametrize("window,T", [(0, 16), (1, 16), (5, 16), (37, 300)])
def test_window_equals_explicitly_masked(window, T):
    torch.manual_seed(5)
    model = GPT(small(attention="window", window=window, bias=True, block_size=T)).eval()
    idx = torch.randint(11, (3, T))
    logits, _ = model(idx, idx)
    i, j = torch.arange(T).unsqueeze(1), torch.arange(T).unsqueeze(0)
    ref = reference_logits(model, idx, allowed=(i - j >= 0) & (i - j <= window))
    torch.testing.assert_close(logits, ref, atol=1e-5, rtol=1e-5)


def test_wide_window_is_the_full_causal_graph():
    torch.manual_seed(6)
    full = GPT(small()).eval()
    wide = GPT(small(attention="window", window=15)).eval()
    wide.load_state_dict(full.state_dict())
    idx = torch.randint(11, (2, 16))
    torch.testing.assert_close(wide(idx, idx)[0], full(idx, idx)[0], atol=1e-5, rtol=1e-5)


# ---------------------------------------------------------------- errors
@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(n_embd=10, n_head=3), "divisible"),
        (dict(attention="window"), "window=W"),
        (dict(window=4), "attention='window'"),
        (dict(attention="local"), "'full' or 'window'"),
        (dict(dropout=1.0), "dropout"),
        (dict(n_layer=0), "n_layer"),
    ],
)
def test_config_errors(kw, match):
    with pytest.raises(ValueError, match=match):
        small(**kw)


def test_call_errors():
    model = GPT(small()).eval()
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="temperature"):
        model.generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=-1.0)
    with pytest.raises(ValueError, match="prompt"):
        model.generate(torch.zeros(1, 0, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="GPTConfig"):
        GPT(dict(vocab_size=3))


def test_dropout_is_active_only_in_training():
    torch.manual_seed(7)
    model = GPT(small(dropout=0.5))
    idx = torch.randint(11, (2, 8))
    model.train()
    assert not torch.equal(model(idx, idx)[0], model(idx, idx)[0])
    model.eval()
    assert torch.equal(model(idx, idx)[0], model(idx, idx)[0])


def test_plain_reference_is_nn_module_free_of_graph_code():
    # the reference above uses only torch functions on the weights: guard its own correctness
    torch.manual_seed(8)
    model = GPT(small(n_layer=1, n_head=1, n_embd=8)).eval()
    idx = torch.randint(11, (1, 5))
    layer = nn.TransformerEncoderLayer(8, 1, 32, 0.0, activation="gelu", batch_first=True, norm_first=True, bias=False)
    blk = model.blocks[0]
    a = blk.self_attn
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]))
        layer.self_attn.out_proj.weight.copy_(a.out_proj.weight)
        layer.linear1.weight.copy_(blk.feedforward.linear1.weight)
        layer.linear2.weight.copy_(blk.feedforward.linear2.weight)
    x = model.wte.weight[idx] + model.wpe.weight[:5]
    h = layer(x, src_mask=nn.Transformer.generate_square_subsequent_mask(5), is_causal=True)
    expected = F.linear(F.layer_norm(h, (8,), model.ln_f.weight, None), model.wte.weight)
    torch.testing.assert_close(reference_logits(model, idx), expected, atol=1e-5, rtol=1e-5)


class _NanoBlock(nn.Module):
    """nanoGPT's Block (one q/k/v matrix, SDPA), for the training comparison."""

    def __init__(self, blk):
        super().__init__()
        a, ff = blk.self_attn, blk.feedforward
        self.heads = a.num_heads
        self.ln_1, self.ln_2 = nn.LayerNorm(16, bias=False), nn.LayerNorm(16, bias=False)
        self.c_attn = nn.Parameter(torch.cat([a.q_proj.weight, a.k_proj.weight, a.v_proj.weight]).detach().clone())
        self.c_proj = nn.Parameter(a.out_proj.weight.detach().clone())
        self.c_fc = nn.Parameter(ff.linear1.weight.detach().clone())
        self.mlp_proj = nn.Parameter(ff.linear2.weight.detach().clone())

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = (
            t.view(B, T, self.heads, C // self.heads).transpose(1, 2)
            for t in F.linear(self.ln_1(x), self.c_attn).split(C, dim=2)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
        x = x + F.linear(y, self.c_proj)
        return x + F.linear(F.gelu(F.linear(self.ln_2(x), self.c_fc)), self.mlp_proj)


def test_training_steps_equal_nanogpt_layout():
    """Same weights, same batches: GPT and nanoGPT's layout (fused q/k/v, its AdamW groups) train alike."""
    torch.manual_seed(9)
    model = GPT(small())
    wte = nn.Parameter(model.wte.weight.detach().clone())
    wpe = nn.Parameter(model.wpe.weight.detach().clone())
    blocks = nn.ModuleList([_NanoBlock(b) for b in model.blocks])
    ln_f = nn.LayerNorm(16, bias=False)
    plain = [wte, wpe, *blocks.parameters(), *ln_f.parameters()]

    def plain_loss(x, y):
        h = wte[x] + wpe[: x.size(1)]
        for blk in blocks:
            h = blk(h)
        return F.cross_entropy(F.linear(ln_f(h), wte).flatten(0, 1), y.flatten())

    opt = model.configure_optimizers(0.1, 1e-2, (0.9, 0.99))
    opt_plain = torch.optim.AdamW(
        [
            {"params": [p for p in plain if p.dim() >= 2], "weight_decay": 0.1},
            {"params": [p for p in plain if p.dim() < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        betas=(0.9, 0.99),
    )
    for _ in range(5):
        x, y = torch.randint(11, (4, 16)), torch.randint(11, (4, 16))
        losses = []
        for o, params, loss_of in (
            (opt, list(model.parameters()), lambda x=x, y=y: model(x, y)[1]),
            (opt_plain, plain, lambda x=x, y=y: plain_loss(x, y)),
        ):
            loss = loss_of()
            o.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 0.5)
            o.step()
            losses.append(loss.item())
        assert losses[0] == pytest.approx(losses[1], abs=1e-5)
    torch.testing.assert_close(model.blocks[1].self_attn.k_proj.weight, blocks[1].c_attn[16:32], atol=1e-5, rtol=1e-4)
