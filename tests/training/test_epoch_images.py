"""``epoch_images``: an epoch of a chosen number of draws, so that long runs checkpoint more often."""

from __future__ import annotations

import numpy as np
import pytest

from training.train_classifier import epoch_images, make_batches


def batches(n_train: int, **config):
    labels = np.arange(n_train) % 3
    config = {"seed": 5, "batch_size": 4, **config}
    return make_batches(
        lambda i, rng: np.full((2, 2, 3), i, np.float32),  # the sample is its image's index
        np.arange(n_train),
        labels,
        np.full(n_train, 1.0 / n_train),
        np.ones(3, np.float32),
        config,
    )


def drawn(data) -> np.ndarray:
    return np.concatenate([data[b][0][:, 0, 0, 0] for b in range(len(data))]).astype(int)


def test_an_epoch_draws_as_many_images_as_it_is_told() -> None:
    short = batches(40, epoch_images=10)
    assert len(short) == 3 and len(drawn(short)) == 10
    whole = batches(40)
    assert len(whole) == 10 and len(drawn(whole)) == 40


def test_each_epoch_draws_anew_from_the_seed_and_the_epoch() -> None:
    data = batches(40, epoch_images=10)
    first = drawn(data)
    data.on_epoch_end()
    second = drawn(data)
    assert not np.array_equal(first, second)
    # A resumed run that starts at epoch 1 draws what the unbroken run drew there.
    resumed = make_batches(
        lambda i, rng: np.full((2, 2, 3), i, np.float32), np.arange(40), np.arange(40) % 3,
        np.full(40, 1 / 40), np.ones(3, np.float32), {"seed": 5, "batch_size": 4, "epoch_images": 10}, start_epoch=1,
    )  # fmt: skip
    assert np.array_equal(drawn(resumed), second)


@pytest.mark.parametrize("value", [0, -3, 2.5, "100", True])
def test_bad_epoch_images_are_refused(value) -> None:
    with pytest.raises(ValueError, match="epoch_images"):
        epoch_images({"epoch_images": value}, 40)


def test_epoch_images_defaults_to_the_training_set() -> None:
    assert epoch_images({}, 123) == 123
    assert epoch_images({"epoch_images": 60}, 123) == 60
