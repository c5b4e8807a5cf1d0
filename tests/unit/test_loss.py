"""The LITE loss: per-layer CE, weighting, hidden-state indexing, gradient paths, chunking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from transformers.models.llama.modeling_llama import LlamaRMSNorm

from lite.loss import (
    final_only,
    layer_outputs,
    linear,
    lite_loss,
    ramp_intermediate,
    resolve_layer_weights,
    uniform,
)


def _batch(vocab: int, seed: int = 0):
    """Two sequences of 12 tokens: a 4/5-token prompt (-100), a response, and padding on row 1."""
    gen = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (2, 12), generator=gen)  # (batch, seq)
    labels = input_ids.clone()
    labels[0, :4] = -100  # prompt of row 0
    labels[1, :5] = -100  # prompt of row 1
    labels[1, 10:] = -100  # padding of row 1
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 10:] = 0
    return input_ids, labels, attention_mask


def _manual_ce(logits, labels):
    """Token-mean CE of logits[t] against labels[t+1], by hand (log-softmax + gather)."""
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)  # (batch, seq-1, vocab)
    target = labels[:, 1:]  # (batch, seq-1)
    keep = target != -100
    picked = logp[keep].gather(-1, target[keep][:, None])[:, 0]  # (tokens,)
    return -picked.mean()


# ---- weighting schemes and validation ----


def test_schemes_add_the_final_layer_and_weight_in_ascending_order():
    assert resolve_layer_weights("uniform", 8, [2, 4, 6]) == {2: 1.0, 4: 1.0, 6: 1.0, 8: 1.0}
    assert resolve_layer_weights("linear", 8, [6, 2, 4]) == {2: 1.0, 4: 2.0, 6: 3.0, 8: 4.0}
    assert resolve_layer_weights("final_only", 8, [2, 4]) == {8: 1.0}
    assert resolve_layer_weights("uniform", 8) == {8: 1.0}
    assert uniform([1, 3]) == {1: 1.0, 3: 1.0}
    assert linear([3, 1]) == {1: 1.0, 3: 2.0}
    assert final_only([1, 3]) == {3: 1.0}


def test_explicit_mapping_accepts_string_keys_and_keeps_zero_weights():
    assert resolve_layer_weights({"2": 1, 8: 0.5, 4: 0}, 8) == {2: 1.0, 4: 0.0, 8: 0.5}


@pytest.mark.parametrize(
    ("spec", "layers", "message"),
    [
        ({0: 1.0, 8: 1.0}, None, "layer 0 is out of range: layers are 1..8"),
        ({9: 1.0}, None, "layer 9 is out of range: layers are 1..8"),
        ("uniform", [2, 9], "layer 9 is out of range: layers are 1..8"),
        ({2: 0.0, 8: 0.0}, None, "all layer weights are zero"),
        ({2: -1.0, 8: 1.0}, None, "weight of layer 2 must be finite and >= 0"),
        ({2: float("nan"), 8: 1.0}, None, "weight of layer 2"),
        ("cubic", [2], "unknown weighting scheme 'cubic'"),
        ({}, None, "no layers given"),
    ],
)
def test_bad_layer_weights_are_refused_with_a_message_naming_the_problem(spec, layers, message):
    with pytest.raises(ValueError, match=message):
        resolve_layer_weights(spec, 8, layers)


# ---- which hidden state is which layer ----


def test_hidden_state_i_is_decoder_layer_i_and_state_n_is_already_normed(tiny_llama):
    model = tiny_llama
    n = len(model.model.layers)
    captured = {}
    hooks = [
        layer.register_forward_hook(
            lambda mod, args, out, i=i: captured.__setitem__(i, out[0] if isinstance(out, tuple) else out)
        )
        for i, layer in enumerate(model.model.layers, start=1)
    ]
    input_ids, _, _ = _batch(model.config.vocab_size)
    with torch.no_grad():
        out = model(input_ids=input_ids, output_hidden_states=True)
    for hook in hooks:
        hook.remove()
    exits = layer_outputs(out.hidden_states, n)
    assert sorted(exits) == list(range(1, n + 1))
    for i in range(1, n):
        hidden, normed = exits[i]
        assert not normed
        torch.testing.assert_close(hidden, captured[i], rtol=0, atol=0)
    hidden, normed = exits[n]
    assert normed
    with torch.no_grad():
        torch.testing.assert_close(hidden, model.model.norm(captured[n]), rtol=0, atol=0)
        torch.testing.assert_close(model.lm_head(hidden), out.logits)
    with pytest.raises(ValueError, match="expected 4 hidden states"):
        layer_outputs(out.hidden_states, 3)


# ---- the loss against hand computations and HF ----


def test_final_layer_only_equals_hf_causal_lm_loss(tiny_llama):
    input_ids, labels, mask = _batch(tiny_llama.config.vocab_size)
    out = tiny_llama(input_ids=input_ids, attention_mask=mask, labels=labels, output_hidden_states=True)
    loss, per_layer = lite_loss(
        out.hidden_states, labels, tiny_llama.model.norm, tiny_llama.lm_head, {4: 1.0}
    )
    torch.testing.assert_close(loss, out.loss)
    assert list(per_layer) == [4]
    torch.testing.assert_close(per_layer[4], out.loss.detach())


def test_per_layer_ce_and_weighted_mean_match_a_manual_computation():
    torch.manual_seed(0)
    hidden, vocab, n = 6, 11, 3
    states = [torch.randn(2, 12, hidden) for _ in range(n + 1)]  # embeddings + 3 layers
    norm = LlamaRMSNorm(hidden)
    with torch.no_grad():
        norm.weight.copy_(torch.rand(hidden) + 0.5)  # a learned scale, so norming twice would show
    head = torch.nn.Linear(hidden, vocab, bias=False)
    _, labels, _ = _batch(vocab)
    loss, per_layer = lite_loss(states, labels, norm, head, {1: 2.0, 2: 0.0, 3: 1.0})
    with torch.no_grad():
        ce1 = _manual_ce(head(norm(states[1])), labels)
        ce3 = _manual_ce(head(states[3]), labels)  # layer N: used as is, never normed again
        ce3_normed_twice = _manual_ce(head(norm(states[3])), labels)
    assert list(per_layer) == [1, 3]  # weight 0: skipped entirely
    torch.testing.assert_close(per_layer[1], ce1)
    torch.testing.assert_close(per_layer[3], ce3)
    assert not torch.allclose(per_layer[3], ce3_normed_twice)
    torch.testing.assert_close(loss, (2 * ce1 + ce3) / 3)


def test_zero_weight_layers_cost_no_head_computation(tiny_llama):
    input_ids, labels, mask = _batch(tiny_llama.config.vocab_size)
    calls = []
    hook = tiny_llama.lm_head.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape))
    with torch.no_grad():
        hs = tiny_llama.model(
            input_ids=input_ids, attention_mask=mask, output_hidden_states=True
        ).hidden_states
        lite_loss(hs, labels, tiny_llama.model.norm, tiny_llama.lm_head, {1: 1.0, 2: 0.0, 3: 0.0, 4: 1.0})
    hook.remove()
    n_targets = int((labels[:, 1:] != -100).sum())
    assert calls == [torch.Size([n_targets, 64])] * 2  # layers 1 and 4 only, response positions only


def test_all_masked_batch_gives_zero_loss_not_nan():
    states = [torch.randn(1, 5, 4, requires_grad=True) for _ in range(3)]
    labels = torch.full((1, 5), -100)
    loss, _ = lite_loss(states, labels, torch.nn.Identity(), torch.nn.Linear(4, 7), {2: 1.0}, chunk_size=2)
    assert loss.item() == 0.0
    loss.backward()


# ---- gradients ----


def _layer_grads(model, weights):
    """Loss and grads of every parameter of decoder layers 1 and 2 under ``weights``."""
    model.zero_grad()
    input_ids, labels, mask = _batch(model.config.vocab_size)
    hs = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
    loss, _ = lite_loss(hs, labels, model.model.norm, model.lm_head, weights)
    loss.backward()
    grads = {}
    for i in (1, 2):
        for name, p in model.model.layers[i - 1].named_parameters():
            grads[(i, name)] = None if p.grad is None else p.grad.clone()
    return grads


def test_layer1_gradient_includes_the_intermediate_loss_with_its_weight(tiny_llama):
    model = tiny_llama.train()
    g_it = _layer_grads(model, {4: 1.0})  # IT: layer 1 learns only through layers 2..4
    g_l1 = _layer_grads(model, {1: 1.0, 4: 0.0})  # layer 1's own exit only
    g_lite = _layer_grads(model, {1: 1.0, 4: 1.0})  # LITE: both paths, mean
    for (i, name), grad in g_l1.items():
        if i == 2:
            # nothing above layer 1 is in the layer-1-only loss: no gradient at all
            assert grad is None or torch.count_nonzero(grad) == 0, name
            continue
        assert torch.count_nonzero(grad) > 0, name
        assert not torch.allclose(grad, g_it[(i, name)]), name  # a different signal than IT's
        # the LITE gradient is exactly the weighted mean of the two paths
        torch.testing.assert_close(g_lite[(i, name)], (grad + g_it[(i, name)]) / 2, rtol=1e-4, atol=1e-6)


# ---- chunking ----


@pytest.mark.parametrize("chunk_size", [1, 3, 7, 1000])
def test_chunked_loss_and_gradients_equal_unchunked(tiny_llama, chunk_size):
    model = tiny_llama.train()
    weights = {1: 1.0, 3: 2.0, 4: 1.0}
    results = []
    for chunk in (None, chunk_size):
        model.zero_grad()
        input_ids, labels, mask = _batch(model.config.vocab_size)
        hs = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
        loss, per_layer = lite_loss(hs, labels, model.model.norm, model.lm_head, weights, chunk_size=chunk)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters()]
        results.append((loss.detach(), per_layer, grads))
    (loss_a, ce_a, grads_a), (loss_b, ce_b, grads_b) = results
    torch.testing.assert_close(loss_a, loss_b)
    for layer in weights:
        torch.testing.assert_close(ce_a[layer], ce_b[layer])
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def _loss_and_grads(model, weights, **mode):
    model.zero_grad()
    input_ids, labels, mask = _batch(model.config.vocab_size)
    hs = model.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True).hidden_states
    loss, per_layer = lite_loss(hs, labels, model.model.norm, model.lm_head, weights, **mode)
    (3.0 * loss).backward()  # a non-unit upstream gradient: the fused backward must scale by it
    return loss.detach(), per_layer, {n: p.grad.clone() for n, p in model.named_parameters()}


@pytest.mark.parametrize("chunk_size", [None, 1, 5])
@pytest.mark.parametrize("tied", [False, True])
def test_fused_head_ce_equals_the_plain_loss_and_gradients(tiny_llama, chunk_size, tied):
    model = tiny_llama.train()
    if tied:  # SmolLM2 ties its head to the embeddings: both uses must sum into one gradient
        model.lm_head.weight = model.model.embed_tokens.weight
    weights = {1: 1.0, 3: 2.0, 4: 1.0}
    loss_a, ce_a, grads_a = _loss_and_grads(model, weights)
    loss_b, ce_b, grads_b = _loss_and_grads(model, weights, chunk_size=chunk_size, fused=True)
    torch.testing.assert_close(loss_b, loss_a)
    assert sorted(ce_b) == sorted(weights)
    for layer in weights:
        torch.testing.assert_close(ce_b[layer], ce_a[layer])
    assert grads_a.keys() == grads_b.keys()
    for name, grad in grads_a.items():
        torch.testing.assert_close(grads_b[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_fused_head_ce_with_a_biased_head_and_an_empty_batch():
    torch.manual_seed(0)
    states = [torch.randn(2, 6, 4, requires_grad=True) for _ in range(3)]
    labels = torch.tensor([[-100, -100, 1, 2, 3, 4], [-100, 5, 6, -100, -100, -100]])
    head = torch.nn.Linear(4, 7)
    torch.nn.init.normal_(head.bias)
    results = []
    for fused in (False, True):
        head.zero_grad()
        for state in states:
            state.grad = None
        loss, _ = lite_loss(
            states, labels, torch.nn.Identity(), head, {1: 1.0, 2: 3.0}, chunk_size=2, fused=fused
        )
        loss.backward()
        grads = [head.weight.grad.clone(), head.bias.grad.clone(), *(s.grad.clone() for s in states[1:])]
        results.append((loss.detach(), grads))
    (loss_a, grads_a), (loss_b, grads_b) = results
    torch.testing.assert_close(loss_b, loss_a)
    for plain, fused in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(fused, plain)
    head.zero_grad()
    empty, _ = lite_loss(states, torch.full((2, 6), -100), torch.nn.Identity(), head, {2: 1.0}, fused=True)
    assert empty.item() == 0.0
    empty.backward()
    assert torch.count_nonzero(head.weight.grad) == torch.count_nonzero(head.bias.grad) == 0


def test_lite_loss_refuses_out_of_range_layers_and_bad_chunks():
    states = [torch.randn(1, 4, 3) for _ in range(3)]
    labels = torch.tensor([[-100, 1, 2, 3]])
    head = torch.nn.Linear(3, 5)
    with pytest.raises(ValueError, match="layer 3 is out of range: layers are 1..2"):
        lite_loss(states, labels, torch.nn.Identity(), head, {3: 1.0})
    with pytest.raises(ValueError, match="all layer weights are zero"):
        lite_loss(states, labels, torch.nn.Identity(), head, {2: 0.0})
    with pytest.raises(ValueError, match="chunk_size"):
        lite_loss(states, labels, torch.nn.Identity(), head, {2: 1.0}, chunk_size=0)


def test_intermediate_ce_is_token_mean_over_response_positions_only():
    # one-hot "hidden states" + identity head: layer 1 predicts token k with logit 10 at every position
    vocab = 5
    states = [torch.zeros(1, 4, vocab) for _ in range(3)]
    states[1][0, :, 3] = 10.0
    labels = torch.tensor([[-100, -100, 3, 1]])  # targets at positions 1 (->3) and 2 (->1)
    head = torch.nn.Linear(vocab, vocab, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.eye(vocab))
    _, per_layer = lite_loss(states, labels, torch.nn.Identity(), head, {1: 1.0})
    logp = F.log_softmax(torch.tensor([0, 0, 0, 10.0, 0]), dim=-1)
    torch.testing.assert_close(per_layer[1], -(logp[3] + logp[1]) / 2)


def test_ramp_scales_every_exit_but_the_deepest():
    weights = {2: 1.0, 4: 2.0, 8: 3.0}
    assert ramp_intermediate(weights, 0.0) == {2: 0.0, 4: 0.0, 8: 3.0}
    assert ramp_intermediate(weights, 0.25) == {2: 0.25, 4: 0.5, 8: 3.0}
    assert ramp_intermediate(weights, 7.0) == weights  # clipped at the full weights


@pytest.mark.parametrize("chunk_size", [None, 5])
def test_final_target_trains_exits_towards_the_final_layers_distribution(chunk_size):
    torch.manual_seed(0)
    hidden, vocab, n = 6, 11, 3
    states = [torch.randn(2, 12, hidden, requires_grad=True) for _ in range(n + 1)]  # embeddings + 3 layers
    norm = LlamaRMSNorm(hidden)
    head = torch.nn.Linear(hidden, vocab, bias=False)
    _, labels, _ = _batch(vocab)
    loss, per_layer = lite_loss(
        states, labels, norm, head, {1: 1.0, 3: 1.0}, chunk_size=chunk_size, exit_target="final"
    )
    keep = labels[:, 1:] != -100
    with torch.no_grad():
        final_probs = torch.softmax(head(states[3])[:, :-1][keep], dim=-1)  # (tokens, vocab)
        exit_logp = torch.log_softmax(head(norm(states[1]))[:, :-1][keep], dim=-1)
        soft_ce = -(final_probs * exit_logp).sum(-1).mean()
    torch.testing.assert_close(per_layer[1], soft_ce)
    torch.testing.assert_close(per_layer[3], _manual_ce(head(states[3]).detach(), labels))  # gold
    loss.backward()
    # the exit's term is a constant to the final layer: its gradient is the gold CE's alone
    gold_only = torch.autograd.grad(_manual_ce(head(states[3]), labels) / 2, states[3])[0]
    torch.testing.assert_close(states[3].grad, gold_only)


def test_final_target_is_refused_by_the_fused_head_and_names_its_choices():
    states = [torch.randn(1, 4, 6) for _ in range(3)]
    labels = torch.tensor([[-100, 1, 2, 3]])
    norm, head = LlamaRMSNorm(6), torch.nn.Linear(6, 9, bias=False)
    with pytest.raises(ValueError, match="fused head"):
        lite_loss(states, labels, norm, head, {1: 1.0, 2: 1.0}, fused=True, exit_target="final")
    with pytest.raises(ValueError, match="exit_target must be one of gold, final"):
        lite_loss(states, labels, norm, head, {1: 1.0, 2: 1.0}, exit_target="teacher")
