"""The weight soup's arithmetic (convert/soup.py); choosing a mix needs TensorFlow and the data, so it is not here."""

from __future__ import annotations

import numpy as np
import pytest

from convert.soup import mix_weights


def test_floating_arrays_are_mixed_and_the_others_kept():
    first = [np.array([0.0, 4.0], np.float32), np.array([[2.0]], np.float64), np.array([7, 9], np.int64)]
    second = [np.array([2.0, 8.0], np.float32), np.array([[6.0]], np.float64), np.array([1, 1], np.int64)]
    mixed = mix_weights(first, second, 0.25)
    np.testing.assert_array_equal(mixed[0], np.array([0.5, 5.0], np.float32))
    np.testing.assert_array_equal(mixed[1], np.array([[3.0]]))
    np.testing.assert_array_equal(mixed[2], first[2])  # integer state: the first model's, not averaged
    assert [m.dtype for m in mixed] == [np.float32, np.float64, np.int64]
    # The ends are the models themselves, and the inputs are left as they were.
    np.testing.assert_array_equal(mix_weights(first, second, 0.0)[0], first[0])
    np.testing.assert_array_equal(mix_weights(first, second, 1.0)[0], second[0])
    np.testing.assert_array_equal(first[0], np.array([0.0, 4.0], np.float32))


def test_different_architectures_and_alphas_out_of_range_are_refused():
    a = [np.zeros((2, 3), np.float32)]
    with pytest.raises(ValueError, match="architecture"):
        mix_weights(a, [np.zeros((3, 2), np.float32)], 0.5)
    with pytest.raises(ValueError, match="architecture"):
        mix_weights(a, a + a, 0.5)
    with pytest.raises(ValueError, match="alpha"):
        mix_weights(a, a, 1.5)
