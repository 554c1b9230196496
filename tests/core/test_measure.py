"""The one per-batch measurer of inference (evaluation, prediction, bench, demo): the MACs `count_macs` gives and
the keep rates the blocks record, over every forward of a batch."""
import pytest
import torch

import dytune
from dytune.core.measure import InferenceMeter
from tests.conftest import converted


@pytest.mark.parametrize("variant", dytune.VARIANTS)
def test_one_batch_measures_what_count_macs_and_keep_rates_give(variant, images):
    model = converted(variant=variant).eval()
    meter = InferenceMeter(model)
    with torch.no_grad():
        output, macs = meter(images)
        assert torch.equal(output, model(images))
        rates = dytune.keep_rates(model)
        assert torch.equal(macs, dytune.count_macs(model, images))
    assert len(set(macs.tolist())) > 1, "images keep different numbers of tokens"
    assert meter.keep_rates() == rates
    assert meter.keep_rate() == sum(rates) / len(rates)
    assert meter.samples == images.shape[0]
    assert meter.gmacs() == macs.sum().item() / images.shape[0] / 1e9


def test_batches_and_forwards_add_up(images):
    """Two batches, each run by an inference step that calls the backbone on two views (as sliding-window
    inference calls it once per window): every forward counts, keep rates weighted by its rows."""
    model = converted(variant="attn_mlp").eval()

    def chunked(m, x):
        return (m(x) + m(x.flip(-1))) / 2

    meter = InferenceMeter(model, chunked)
    macs, kept, rows = [], [], []
    with torch.no_grad():
        for batch in (images, images[:4]):
            output, measured = meter(batch)
            assert torch.equal(output, chunked(model, batch))
            expected = 0
            for view in (batch, batch.flip(-1)):
                expected = expected + dytune.count_macs(model, view)
                kept.append([m.float().mean().item() * len(view) for m in dytune.core.convert.keep_masks(model)])
                rows.append(len(view))
            assert torch.equal(measured, expected)
            macs.append(measured)
    assert meter.samples == 11
    assert meter.gmacs() == (macs[0].sum().item() + macs[1].sum().item()) / 11 / 1e9
    assert meter.keep_rates() == pytest.approx([sum(k) / sum(rows) for k in zip(*kept)], abs=1e-12)
    assert meter.keep_rate() == sum(meter.keep_rates()) / len(meter.keep_rates())


def test_a_model_without_dispatchers_has_no_keep_rate(images):
    model = converted(variant="attn_mlp").eval()
    meter = InferenceMeter(model)
    with torch.no_grad(), dytune.execution(model, "complete"):
        _, macs = meter(images)
        assert torch.equal(macs, dytune.count_macs(model, images))
    assert meter.keep_rates() is None and meter.keep_rate() is None
