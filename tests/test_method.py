"""The numbers the method exists to produce, each checked against a value that does not come from the code
under test: a hand computation on tiny tensors, a second plain implementation written here, or a library
(scipy). Stage 2's objective, the mixing schemes' distributions, the random-subspace baseline's scale, the
Hadamard / Fastfood identities. Table columns and checkpoint selection: tests/test_selection_and_tables.py."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
from test_dets import EXAMPLES

from deltaspace.backbones import load_backbone
from deltaspace.dets import build_delta_model
from deltaspace.projections import Fastfood, hadamard_matrix, walsh_hadamard
from deltaspace.decompose import joint_loss
from deltaspace.optimize import random_up_projection
from deltaspace.subspace import Subspace, UpProjection, simplex_weights

# ---- stage 2's objective ---------------------------------------------------------------------------------------


def _hand_down(subspace: Subspace, det: str, delta: torch.Tensor) -> torch.Tensor:
    """Down_m(delta) = W2 tanh(W1 delta + b1) + b2, from the weights alone."""
    down = subspace.down[det]
    w1, b1 = down.first.weight.detach().double(), down.first.bias.detach().double()
    w2, b2 = down.second.weight.detach().double(), down.second.bias.detach().double()
    return w2 @ torch.tanh(w1 @ delta.double() + b1) + b2


def _hand_cross_entropy(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """-mean log softmax(scores)[label], written out (logsumexp of each row minus the gold score)."""
    scores = scores.double()
    total = 0.0
    for row, label in zip(scores, labels.tolist()):
        top = row.max()
        total += float(top + torch.log(torch.exp(row - top).sum()) - row[label])
    return total / len(labels)


def test_stage2_loss_is_lambda_times_plain_l2_reconstruction_plus_task_losses_at_the_mixed_point(tiny_model_dirs):
    path = str(tiny_model_dirs["encoder"])
    specs = {"lora": {"method": "lora", "rank": 2, "alpha": 4}, "prompt": {"method": "prompt", "length": 2}}
    models = {d: build_delta_model(load_backbone({"name_or_path": path}), s, 3) for d, s in specs.items()}
    batch = next(iter(models.values())).backbone.prepare(EXAMPLES)
    torch.manual_seed(0)
    subspace = Subspace({d: m.num_parameters for d, m in models.items()}, 3)
    with torch.no_grad():  # trained-scale projections: decoded points move the DETs' scores visibly
        for module in (*subspace.up.values(), *(d.first for d in subspace.down.values())):
            module.weight.mul_(25)
    inits = {d: m.vector() for d, m in models.items()}
    deltas = {d: 0.2 * torch.randn(m.num_parameters) for d, m in models.items()}
    weights, lam = torch.tensor([0.3, 0.7]), 0.5

    loss, reconstruction, task_loss = joint_loss(subspace, models, inits, deltas, batch, weights, lam, "fp32",
                                                 torch.device("cpu"))

    points = {d: _hand_down(subspace, d, deltas[d]) for d in specs}
    up = {d: subspace.up[d].weight.detach().double() for d in specs}
    expected_reconstruction = sum(math.sqrt(float(((deltas[d].double() - up[d] @ points[d]) ** 2).sum()))
                                  for d in specs)
    mixed = 0.3 * points["lora"] + 0.7 * points["prompt"]

    def task_loss_at(point_of) -> float:
        total = 0.0
        for det, model in models.items():
            model.load_vector((inits[det].double() + up[det] @ point_of(det)).float())  # the module's own forward
            with torch.no_grad():
                total += _hand_cross_entropy(model(batch), batch.labels)
        return total

    expected_task = task_loss_at(lambda det: mixed)
    # The test can tell the mixed point from each DET's own point, and from the init.
    assert abs(task_loss_at(lambda det: points[det]) - expected_task) > 0.01
    assert abs(task_loss_at(lambda det: 0 * mixed) - expected_task) > 0.01
    loss, reconstruction, task_loss = (float(x.detach()) for x in (loss, reconstruction, task_loss))
    assert reconstruction == pytest.approx(expected_reconstruction, rel=1e-5)
    assert task_loss == pytest.approx(expected_task, rel=1e-4)
    assert loss == pytest.approx(lam * expected_reconstruction + expected_task, rel=1e-4)
    assert expected_reconstruction > 0.1 and expected_task > 0.1  # both terms matter at these values


# ---- mixing schemes --------------------------------------------------------------------------------------------

SAMPLES = 20_000


def _draw(scheme: str, n: int) -> np.ndarray:
    generator = torch.Generator().manual_seed(123)
    return torch.stack([simplex_weights(n, scheme, generator) for _ in range(SAMPLES)]).double().numpy()


def test_paper_mixing_is_the_reference_stick_breaking():
    """alpha ~ U(0,1), beta ~ U(0, 1 - alpha): E = (1/2, 1/4, 1/4), Var alpha = 1/12, Var beta = 1/9 - 1/16."""
    w = _draw("paper", 3)
    np.testing.assert_allclose(w.mean(0), [1 / 2, 1 / 4, 1 / 4], atol=0.006)
    np.testing.assert_allclose(w.var(0), [1 / 12, 7 / 144, 7 / 144], atol=0.003)
    assert scipy.stats.kstest(w[:, 0], scipy.stats.uniform.cdf).pvalue > 0.01
    # beta / (1 - alpha) is again U(0, 1), independent of alpha.
    assert scipy.stats.kstest(w[:, 1] / (1 - w[:, 0]), scipy.stats.uniform.cdf).pvalue > 0.01
    assert abs(np.corrcoef(w[:, 0], w[:, 1] / (1 - w[:, 0]))[0, 1]) < 0.03


def test_dirichlet_mixing_is_uniform_on_the_simplex():
    """Flat Dirichlet(1, 1, 1): E = 1/3 each, Var = 1/18, Cov = -1/36, each marginal Beta(1, 2)."""
    w = _draw("dirichlet", 3)
    np.testing.assert_allclose(w.mean(0), [1 / 3] * 3, atol=0.006)
    np.testing.assert_allclose(np.cov(w.T), np.full((3, 3), -1 / 36) + np.eye(3) * (1 / 18 + 1 / 36), atol=0.003)
    for k in range(3):
        assert scipy.stats.kstest(w[:, k], scipy.stats.beta(1, 2).cdf).pvalue > 0.01


def test_every_stage2_caller_uses_the_configured_mixing_scheme(tiny_stage1, tmp_path, monkeypatch):
    """Training steps and the checkpoint choice's mixed dev score both draw with subspace.mixing."""
    import deltaspace.decompose as decompose_stage

    root, spec, data_dirs = tiny_stage1
    schemes = []
    real = decompose_stage.simplex_weights

    def spy(n, scheme="paper", generator=None):
        schemes.append(scheme)
        return real(n, scheme, generator)

    monkeypatch.setattr(decompose_stage, "simplex_weights", spy)
    spec = {**spec, "decompose": {**spec["decompose"], "mixing": "dirichlet", "steps": 2, "eval_every": 2}}
    decompose_stage.decompose(spec, root / "vectors", data_dirs, tmp_path / "s2", tmp_path / "ck", log=lambda m: None)
    # the start's dev evaluation, 2 training steps, then one dev evaluation over the one training task.
    assert schemes == ["dirichlet"] * 4


# ---- the random-subspace baseline ------------------------------------------------------------------------------


def _dense(up) -> torch.Tensor:
    """The D x r matrix of any up-projection, column by column."""
    with torch.no_grad():
        return up(torch.eye(up.rank)).T


def _learned_dense(dim=600, rank=4) -> UpProjection:
    learned = UpProjection(rank, dim)
    with torch.no_grad():  # a trained-looking matrix: low-rank structure and a scale far from the random start
        basis = torch.randn(dim, 1, generator=torch.Generator().manual_seed(9))
        learned.weight.copy_(0.37 * basis @ torch.ones(1, rank) + 0.01 * learned.weight)
    return learned


def _learned_fastfood(dim=3000, rank=4) -> Fastfood:
    learned = Fastfood(dim, rank, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        learned.diagonal.mul_(7.0)
    return learned


@pytest.mark.parametrize("make_learned", [_learned_dense, _learned_fastfood], ids=["dense", "fastfood"])
def test_random_baseline_has_the_learned_shape_and_norm_another_direction_and_its_seed(make_learned):
    learned = make_learned()
    learned_matrix = _dense(learned)
    random = random_up_projection(learned, seed=5)
    matrix = _dense(random)
    assert type(random) is type(learned) and matrix.shape == learned_matrix.shape
    # Same scale: Frobenius norms agree, summed entry by entry here.
    assert float(matrix.double().pow(2).sum().sqrt()) == pytest.approx(float(learned_matrix.double().pow(2).sum().sqrt()),
                                                                       rel=1e-4)
    cosine = float((matrix * learned_matrix).sum() / (matrix.norm() * learned_matrix.norm()))
    assert abs(cosine) < 0.1  # random directions in 2400+ numbers: |cos| ~ 0.02
    torch.testing.assert_close(_dense(random_up_projection(learned, seed=5)), matrix, rtol=0, atol=0)
    assert not torch.allclose(_dense(random_up_projection(learned, seed=6)), matrix)
    assert not any(p.requires_grad and p is q for p in random.parameters() for q in learned.parameters())


# ---- Hadamard and Fastfood -------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 4, 8, 64, 128, 256])
def test_hadamard_matrix_is_sylvester_and_orthogonal(n):
    h = hadamard_matrix(n).double()
    torch.testing.assert_close(h @ h.T, n * torch.eye(n, dtype=torch.float64), rtol=0, atol=0)
    np.testing.assert_array_equal(h.numpy(), scipy.linalg.hadamard(n))


@pytest.mark.parametrize("n", [2, 128, 256, 2048])  # 2048 = 128 x 16: the blocked path
def test_walsh_hadamard_equals_scipys_hadamard_and_is_its_own_inverse_up_to_n(n):
    x = torch.randn(3, n, dtype=torch.float64, generator=torch.Generator().manual_seed(n))
    expected = x.numpy() @ scipy.linalg.hadamard(n).astype(np.float64)  # H is symmetric: x H = (H x^T)^T
    np.testing.assert_allclose(walsh_hadamard(x).numpy(), expected, rtol=1e-10, atol=1e-9)
    torch.testing.assert_close(walsh_hadamard(walsh_hadamard(x)), n * x)


def test_fastfood_equals_the_explicit_product_built_from_scipys_hadamard():
    """M = trunc_D(H G Pi H B) / sqrt(L), every factor built here, and M.T for the transposed direction."""
    dim, rank, length = 300, 3, 512
    fastfood = Fastfood(dim, rank, generator=torch.Generator().manual_seed(2))
    generator = torch.Generator().manual_seed(2)  # redraw what the constructor draws, in its order
    g = (torch.randn(length, generator=generator) * 0.02).double().numpy()
    permutation = np.eye(length)[torch.randperm(length, generator=generator).numpy()]
    signs = np.ones(length)
    signs[:rank] = (torch.randint(0, 2, (rank,), generator=generator).double() * 2 - 1).numpy()
    h = scipy.linalg.hadamard(length).astype(np.float64)
    matrix = (h @ np.diag(g) @ permutation @ h @ np.diag(signs))[:dim, :rank] / math.sqrt(length)
    np.testing.assert_allclose(_dense(fastfood).double().numpy(), matrix, rtol=1e-4, atol=1e-6)
    deltas = torch.randn(2, dim, generator=torch.Generator().manual_seed(3))
    np.testing.assert_allclose(fastfood.transposed(deltas).detach().double().numpy(), deltas.double().numpy() @ matrix,
                               rtol=1e-4, atol=1e-6)
    # The adjoint identity <M p, d> = <p, M.T d>, which needs neither matrix.
    point = torch.randn(rank, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert float(fastfood(point) @ deltas[0]) == pytest.approx(float(point @ fastfood.transposed(deltas[0])),
                                                                   rel=1e-4)
    assert float(fastfood.frobenius_norm()) == pytest.approx(float(np.linalg.norm(matrix)), rel=1e-4)
