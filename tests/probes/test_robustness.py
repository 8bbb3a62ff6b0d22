"""Garg et al.'s distribution shifts: the shifted prompts have the promised geometry and column k of a query shift is
the prediction for the query from k examples."""
import numpy as np
import pytest
import torch

import probes
import tasks
from probes.robustness import query_shift, query_shift_predictions


def _task():
    return tasks.get("linear_regression", d=4)


def test_examples_in_one_orthant_share_a_sign_pattern_and_keep_their_labels():
    examples, query = query_shift(_task(), "examples in one orthant", 16, 6, seed=int(torch.randint(0, 10**6, ())))
    assert (torch.sign(examples.xs) == examples.params["signs"][:, None]).all() and query.shape == (16, 4)
    assert not (torch.sign(query) == examples.params["signs"]).all()  # the query is not held to the orthant
    torch.testing.assert_close(examples.ys, torch.einsum("bnd,bd->bn", examples.xs, examples.params["w"]))


def test_half_space_query_lies_opposite_its_examples_and_second_moments_stay_identity():
    examples, query = query_shift(_task(), "query in the opposite half-space", 4000, 3,
                                  seed=int(torch.randint(0, 10**6, ())))
    z = examples.params["z"]
    assert (torch.einsum("bnd,bd->bn", examples.xs, z) >= 0).all() and ((query * z).sum(-1) <= 0).all()
    torch.testing.assert_close(z.norm(dim=-1), torch.ones(4000, dtype=torch.float64))
    second = torch.einsum("bi,bj->ij", query, query) / 4000  # reflections keep E[x x^T] = I
    torch.testing.assert_close(second, torch.eye(4, dtype=torch.float64), rtol=0, atol=0.1)


def test_query_shift_column_k_is_the_prediction_from_k_examples():
    task = _task()
    examples, query = query_shift(task, "examples in one orthant", 5, 7, seed=int(torch.randint(0, 10**6, ())))
    preds = query_shift_predictions(lambda p: probes.solve("ols", p), examples, query)  # [5, 7]
    for k in (1, 3, 6):
        X, y = examples.xs[:, :k].numpy(), examples.ys[:, :k].numpy()
        for b in range(5):
            w = np.linalg.pinv(X[b]) @ y[b]
            assert preds[b, k].item() == pytest.approx(float(query[b].numpy() @ w), abs=1e-9)
    assert (preds[:, 0] == 0).all()
