"""A train callback that raises StopTraining ends the run with the result of the epochs done."""
import numpy as np
import pytest

from dreamflow_utils import Config, train
from dreamflow_utils.core.train import StopTraining
from helpers import synthetic_data

DATA = synthetic_data()
SMALL = dict(layout="block", C_s=4, N2=12, B=20, T_s=400, Nep=4, seed=1)


def stop_after(k, seen):
    def callback(epoch, weights, accuracy):
        seen.append(epoch)
        if epoch == k:
            raise StopTraining
    return callback


def same(a, b):
    return (a.config == b.config and a.epoch_accuracies == b.epoch_accuracies and a.test_accuracy == b.test_accuracy
            and all(np.array_equal(p, q) for p, q in zip(a.weights, b.weights))
            and np.array_equal(a.predictions, b.predictions))


@pytest.mark.parametrize("eval_every", [1, 3])
def test_stopped_run_is_the_run_of_the_epochs_done(eval_every):
    seen = []
    config = Config(**SMALL, eval_every=eval_every)
    stopped = train(config, DATA, callback=stop_after(2, seen))
    assert seen == [1, 2] and stopped.config == config.replace(Nep=2) and len(stopped.epoch_seconds) == 2
    assert same(stopped, train(config.replace(Nep=2), DATA))  # epoch 2 measured even where eval_every skips it


def test_stop_at_the_last_epoch_changes_nothing():
    config = Config(**SMALL)
    assert same(train(config, DATA, callback=stop_after(4, [])), train(config, DATA))


def test_stop_that_leaves_no_valid_model_is_raised():
    config = Config(layer1="krotov", layout=None, C_s=4, kh_k=2, kh_epochs=2, N2=12, B=20, T_s=400, Nep=3)
    with pytest.raises(StopTraining, match="stopped after epoch 1, which leaves no result: kh_epochs"):
        train(config, DATA, callback=stop_after(1, []))
