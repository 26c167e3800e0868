"""The EMA vector quantiser against hand-computed cases: straight-through gradient, EMA update, restarts."""

from __future__ import annotations

import torch

from ctbench_generators.vqgan_ddpm.vqgan import EMAQuantizer


def _quantizer(**kw) -> EMAQuantizer:
    q = EMAQuantizer(2, 2, decay=0.5, eps=0.0, **kw)
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    q.embed_sum.copy_(q.embedding)
    q.cluster_size.fill_(1.0)
    q.initialized.fill_(True)
    return q.train()


def _z() -> torch.Tensor:
    # three latent vectors [1,0], [0,1], [9,9] laid out as (N=1, C=2, d=3, h=1, w=1)
    return torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 9.0]]).t().reshape(1, 2, 3, 1, 1)


def test_nearest_codes_and_forward_value():
    out = _quantizer(dead_code_restart=False)(_z())
    assert out.indices.flatten().tolist() == [0, 0, 1]
    expected = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]).t().reshape(1, 2, 3, 1, 1)
    assert torch.equal(out.z_q, expected)  # forward value: the codes before this batch's EMA update


def test_ema_update_matches_hand_computation():
    q = _quantizer(dead_code_restart=False)
    q(_z())
    # counts (2, 1); sums [1,1] and [9,9]; decay 0.5 from cluster_size (1, 1) and embed_sum = codebook
    assert torch.allclose(q.cluster_size, torch.tensor([1.5, 1.0]))
    assert torch.allclose(q.embed_sum, torch.tensor([[0.5, 0.5], [9.5, 9.5]]))
    # eps = 0: no Laplace smoothing, embedding = embed_sum / cluster_size
    assert torch.allclose(q.embedding, torch.tensor([[1 / 3, 1 / 3], [9.5, 9.5]]))


def test_laplace_smoothing_with_eps():
    q = EMAQuantizer(2, 2, decay=0.5, eps=0.1, dead_code_restart=False)
    q.embedding.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0]]))
    q.embed_sum.copy_(q.embedding)
    q.cluster_size.fill_(1.0)
    q.initialized.fill_(True)
    q.train()(_z())
    n = 2.5
    smoothed = (torch.tensor([1.5, 1.0]) + 0.1) / (n + 2 * 0.1) * n
    assert torch.allclose(q.embedding, torch.tensor([[0.5, 0.5], [9.5, 9.5]]) / smoothed[:, None])


def test_straight_through_gradient_and_commitment():
    q = _quantizer(dead_code_restart=False, commitment_weight=0.25)
    z = _z().requires_grad_(True)
    out = q(z)
    e = torch.tensor([[0.0, 0.0], [0.0, 0.0], [10.0, 10.0]]).t().reshape(1, 2, 3, 1, 1)
    # β · mean ||z - e||²: squared errors 1, 0, 0, 1, 1, 1 over 6 elements
    assert torch.isclose(out.commitment_loss, torch.tensor(0.25 * 4 / 6))
    w = torch.arange(6.0).reshape(1, 2, 3, 1, 1)
    ((out.z_q * w).sum() + out.commitment_loss).backward()
    # straight-through passes w unchanged; the commitment term adds 2β(z - e)/6
    assert torch.allclose(z.grad, w + 2 * 0.25 * (z.detach() - e) / 6)


def test_frozen_codebook_without_l_cb_and_no_commitment():
    q = _quantizer(ema_update=False, dead_code_restart=False, commitment_weight=0.0)
    before = q.embedding.clone()
    out = q(_z())
    assert torch.equal(q.embedding, before)
    assert float(out.commitment_loss) == 0.0


def test_dead_code_is_restarted_at_an_encoder_output():
    q = _quantizer(restart_threshold=1.2)  # code 1's EMA usage falls to 1.0 < 1.2 after the update
    z = _z()
    q(z, torch.Generator().manual_seed(0))
    rows = z.reshape(2, 3).t()
    assert torch.allclose(q.cluster_size, torch.tensor([1.5, 1.2]))
    assert any(torch.equal(q.embedding[1], r) for r in rows)
    assert torch.allclose(q.embed_sum[1], q.embedding[1] * 1.2)


def test_first_training_batch_initialises_the_codebook_from_data():
    q = EMAQuantizer(4, 3, ema_update=False, dead_code_restart=False).train()
    z = torch.randn(2, 3, 2, 2, 2, generator=torch.Generator().manual_seed(1))
    q(z, torch.Generator().manual_seed(0))
    rows = z.permute(0, 2, 3, 4, 1).reshape(-1, 3)
    assert bool(q.initialized)
    for code in q.embedding:
        assert (rows - code).abs().sum(1).min() == 0


def test_chunked_nearest_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    q = EMAQuantizer(16384, 8)  # chunks of 4096 rows
    flat = torch.randn(9000, 8, generator=g)
    brute = torch.cat([torch.cdist(f, q.embedding).argmin(1) for f in flat.split(1000)])
    assert torch.equal(q.nearest(flat), brute)
