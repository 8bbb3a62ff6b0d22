import pytest
import torch

import tasks
from tasks import formats


@pytest.fixture
def prompts():
    return tasks.get("linear_regression", d=5, noise_std=0.1).sample(4, 7, seed=5, dtype=torch.float64)


@pytest.mark.parametrize("name", ["interleaved", "disjoint", "paired"])
def test_two_token_formats_round_trip(name, prompts):
    fmt = formats.get(name)
    inputs = fmt.encode(prompts)
    assert inputs.shape == (4, fmt.seq_len(7), fmt.input_dim(5))
    xs, ys = fmt.parse(inputs)
    assert torch.equal(xs, prompts.xs) and torch.equal(ys, prompts.ys)


def test_stacked_round_trip_hides_the_query_label(prompts):
    fmt = formats.get("stacked")
    inputs = fmt.encode(prompts)
    assert inputs.shape == (4, 7, 6)
    assert (inputs[:, -1, -1] == 0).all()
    xs, ys = fmt.parse(inputs)
    assert torch.equal(xs, prompts.xs) and torch.equal(ys, prompts.ys[:, :-1])
    assert torch.equal(fmt.targets(prompts), prompts.ys[:, -1:])


def test_garg_layout():
    p = tasks.get("linear_regression", d=3).sample(2, 4, seed=0)
    t = formats.get("interleaved").encode(p)
    assert torch.equal(t[:, 2], p.xs[:, 1])
    assert torch.equal(t[:, 3, 0], p.ys[:, 1]) and (t[:, 3, 1:] == 0).all()
    d = formats.get("disjoint").encode(p)
    assert (d[:, 2, 0] == 0).all() and torch.equal(d[:, 2, 1:], p.xs[:, 1])
    assert torch.equal(d[:, 3, 0], p.ys[:, 1]) and (d[:, 3, 1:] == 0).all()
    q = formats.get("paired").encode(p)
    assert torch.equal(q[:, 2, :3], p.xs[:, 1]) and (q[:, 2, 3] == 0).all()
    assert torch.equal(q[:, 3, :3], p.xs[:, 1]) and torch.equal(q[:, 3, 3], p.ys[:, 1])


def _causal_label_sum(inputs):
    """A stand-in model: output at position t = sum of the y-slots (coordinate 0) of tokens 0..t."""
    return inputs[..., 0].cumsum(dim=1)


def test_interleaved_decode_reads_x_positions_so_column_i_never_sees_y_i(prompts):
    fmt = formats.get("interleaved")
    preds = fmt.predict(_causal_label_sum, prompts)  # y-slot of x tokens holds x's first coordinate
    x_part = prompts.xs[..., 0].cumsum(1)
    y_part = torch.cat([torch.zeros(4, 1, dtype=torch.float64), prompts.ys.cumsum(1)[:, :-1]], dim=1)
    torch.testing.assert_close(preds, x_part + y_part)


def test_stacked_predict_runs_one_sequence_per_prefix(prompts):
    fmt = formats.get("stacked")
    seen = []

    def forward(inputs):
        seen.append(inputs.shape[1])
        return inputs[..., -1].sum(1, keepdim=True).expand(-1, inputs.shape[1])  # sum of y-slots

    preds = fmt.predict(forward, prompts)
    assert seen == list(range(1, 8))
    expected = torch.cat([torch.zeros(4, 1, dtype=torch.float64), prompts.ys.cumsum(1)[:, :-1]], dim=1)
    torch.testing.assert_close(preds, expected)


def test_unknown_format_lists_choices():
    with pytest.raises(ValueError, match="interleaved, disjoint, paired, stacked"):
        formats.get("nope")
