"""Value-range conversions, exact on every uint8 value."""
import jax.numpy as jnp
import numpy as np

from srgan_jax import value_ranges

ALL = np.arange(256, dtype=np.uint8)


def test_uint8_to_model_ranges_are_exact():
    np.testing.assert_array_equal(value_ranges.lr_from_uint8(ALL), ALL.astype(np.float32) / 255)
    hr = value_ranges.hr_from_uint8(ALL)
    assert hr.dtype == np.float32 and hr[0] == -1.0 and hr[-1] == 1.0
    # Back to uint8 exactly, through the unit range, as evaluation does.
    back = np.round(value_ranges.unit_from_sr(hr.astype(np.float64)) * 255)
    np.testing.assert_array_equal(back, ALL)


def test_unit_from_sr_clips_and_takes_jax_arrays():
    values = jnp.asarray([-3.0, -1.0, 0.0, 1.0, 2.0])
    np.testing.assert_array_equal(value_ranges.unit_from_sr(values), [0.0, 0.0, 0.5, 1.0, 1.0])
