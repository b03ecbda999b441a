"""MATLAB bicubic imresize: weights derived by hand from MATLAB's contributions() algorithm."""
import numpy as np
import pytest

from srgan_jax.imresize import cubic, degrade, im2uint8, imresize, modcrop, resize_matrix

# Keys' cubic (a = -0.5) at the distances that occur below, by hand:
#   c(t) = 1.5 t^3 - 2.5 t^2 + 1             for t <= 1
#   c(t) = -0.5 t^3 + 2.5 t^2 - 4 t + 2      for 1 < t <= 2
C025 = 1.5 / 64 - 2.5 / 16 + 1  # 0.8671875
C075 = 1.5 * 27 / 64 - 2.5 * 9 / 16 + 1  # 0.2265625
C125 = -0.5 * 125 / 64 + 2.5 * 25 / 16 - 5 + 2  # -0.0703125
C175 = -0.5 * 343 / 64 + 2.5 * 49 / 16 - 7 + 2  # -0.0234375


def test_cubic_kernel_values():
    t = np.array([0.0, 0.25, 0.75, 1.0, 1.25, 1.75, 2.0, 2.5, -0.25, -1.75])
    expected = [1.0, C025, C075, 0.0, C125, C175, 0.0, 0.0, C025, C175]
    np.testing.assert_allclose(cubic(t), expected, atol=1e-15)
    assert (C025, C075, C125, C175) == (0.8671875, 0.2265625, -0.0703125, -0.0234375)


def test_upscale_2_to_4_weights_by_hand():
    # scale 2: output x samples u = x/2 + 1/4 = 0.75, 1.25, 1.75, 2.25 (1-based). Output 1 taps
    # input -2..3 at distances 2.75, 1.75, 0.75, -0.25, -1.25, -2.25; symmetric mirroring of a
    # length-2 axis maps indices -1, 0 to 2, 1. So out1 = (C075 + C025) x1 + (C175 + C125) x2.
    # Output 2 taps -1..4 at 2.25, 1.25, 0.25, -0.75, -1.75, -2.75; 0 -> 1 and 3 -> 2, so
    # out2 = (C125 + C025) x1 + (C075 + C175) x2. Outputs 3 and 4 mirror 2 and 1.
    out1 = [C075 + C025, C175 + C125]  # [1.09375, -0.09375]
    out2 = [C125 + C025, C075 + C175]  # [0.796875, 0.203125]
    expected = np.array([out1, out2, out2[::-1], out1[::-1]])
    np.testing.assert_allclose(resize_matrix(2, 4, 2.0), expected, atol=1e-15)
    np.testing.assert_allclose(
        imresize(np.array([[0.0, 1.0]]), output_shape=(1, 4)),
        [[-0.09375, 0.203125, 0.796875, 1.09375]],
        atol=1e-15,
    )


def test_upscale_3_to_6_boundary_by_hand():
    # As above, but a length-3 axis: index 3 is real now, so output 2 keeps three taps.
    expected_first_rows = np.array(
        [[C075 + C025, C175 + C125, 0.0], [C125 + C025, C075, C175]]
    )
    np.testing.assert_allclose(resize_matrix(3, 6, 2.0)[:2], expected_first_rows, atol=1e-15)
    np.testing.assert_allclose(resize_matrix(3, 6, 2.0)[::-1, ::-1], resize_matrix(3, 6, 2.0))


def test_downscale_4_to_2_is_antialiased_by_hand():
    # scale 1/2: kernel 0.5 * c(0.5 d), 8 input pixels wide, 10 taps. Output 1 samples u = 1.5 and
    # taps input -3..6 at distances 4.5 ... -4.5; the nonzero ones are -2..5 at 3.5 ... -3.5.
    # Mirroring a length-4 axis maps -2, -1, 0, 5 to 3, 2, 1, 4, so
    #   x1 gets d = 1.5, 0.5:   0.5 (C075 + C025)
    #   x2 gets d = 2.5, -0.5:  0.5 (C125 + C025)
    #   x3 gets d = 3.5, -1.5:  0.5 (C175 + C075)
    #   x4 gets d = -2.5, -3.5: 0.5 (C125 + C175)
    # The weights already sum to 1, so normalisation leaves them unchanged.
    out1 = 0.5 * np.array([C075 + C025, C125 + C025, C175 + C075, C125 + C175])
    np.testing.assert_allclose(out1, [0.546875, 0.3984375, 0.1015625, -0.046875])
    np.testing.assert_allclose(resize_matrix(4, 2, 0.5), [out1, out1[::-1]], atol=1e-15)


def test_tiny_axes_mirror_over_several_periods():
    # A length-1 axis: every tap mirrors onto the one pixel.
    np.testing.assert_allclose(resize_matrix(1, 3, 3.0), np.ones((3, 1)))
    # 2 -> 1: the 10 taps wrap around the length-2 axis several times; by symmetry both halve.
    np.testing.assert_allclose(resize_matrix(2, 1, 0.5), [[0.5, 0.5]], atol=1e-15)
    row = np.array([[0.0, 1.0, 0.25]])
    out = imresize(row, scale=2)
    assert out.shape == (2, 6)
    np.testing.assert_allclose(out, np.repeat(row @ resize_matrix(3, 6, 2.0).T, 2, axis=0))


def test_output_shape_is_ceil_of_scaled_size():
    assert imresize(np.zeros((5, 7)), scale=0.5).shape == (3, 4)
    assert imresize(np.zeros((5, 7, 3)), scale=1 / 3).shape == (2, 3, 3)
    assert imresize(np.zeros((5, 7)), scale=(2, 0.5)).shape == (10, 4)
    assert imresize(np.zeros((10, 10)), output_shape=(3, 17)).shape == (3, 17)
    # With both, scale sets the kernel and output_shape the size.
    assert imresize(np.zeros((99, 99)), scale=1 / 3, output_shape=(33, 33)).shape == (33, 33)


@pytest.mark.parametrize("scale", [0.25, 1 / 3, 0.5, 2, 3, 4])
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.uint8])
def test_constant_image_stays_constant(scale, dtype):
    image = np.full((13, 10, 3), 200 if dtype == np.uint8 else 0.3, dtype=dtype)
    out = imresize(image, scale=scale)
    assert out.dtype == dtype
    np.testing.assert_allclose(out, image.flat[0], rtol=1e-6 if dtype == np.float32 else 1e-12)


def test_rows_resized_per_channel():
    rng = np.random.default_rng(0)
    image = rng.random((8, 12, 3))
    out = imresize(image, scale=0.5)
    for c in range(3):
        expected = resize_matrix(8, 4, 0.5) @ image[..., c] @ resize_matrix(12, 6, 0.5).T
        np.testing.assert_allclose(out[..., c], expected, atol=1e-12)


def test_uint8_is_rounded_and_clipped_after_each_pass_smaller_scale_first():
    # [0, 255] -> 4: float results [-23.9, 51.797, 203.203, 278.9] -> [0, 52, 203, 255].
    out = imresize(np.array([[0, 255]], dtype=np.uint8), output_shape=(1, 4))
    np.testing.assert_array_equal(out, [[0, 52, 203, 255]])
    # MATLAB resizes the axis with the smaller scale first (columns here) and stores the
    # intermediate in the input class.
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(6, 16), dtype=np.uint8)
    cols = np.clip(np.floor(image @ resize_matrix(16, 8, 0.5).T + 0.5), 0, 255)
    expected = np.clip(np.floor(resize_matrix(6, 12, 2.0) @ cols + 0.5), 0, 255)
    np.testing.assert_array_equal(imresize(image, scale=(2, 0.5)), expected)


def test_im2uint8_rounds_half_up_and_clips():
    values = np.array([-0.1, 0.0, 0.5 / 255, 1.49 / 255, 0.5, 1.0, 1.2])
    np.testing.assert_array_equal(im2uint8(values), [0, 0, 1, 1, 128, 255, 255])


def test_modcrop_and_degrade():
    rng = np.random.default_rng(2)
    hr = rng.random((26, 31, 3))
    cropped = modcrop(hr, 4)
    assert cropped.shape == (24, 28, 3)
    np.testing.assert_array_equal(cropped, hr[:24, :28])
    lr = degrade(cropped, 4)
    assert lr.shape == (6, 7, 3)
    np.testing.assert_allclose(lr, imresize(cropped, scale=0.25))
    with pytest.raises(ValueError, match=r"26x31 is not divisible by scale 4"):
        degrade(hr, 4)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scale, output_shape"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="scale must be"):
        imresize(np.zeros((4, 4)), scale=-1)
    with pytest.raises(ValueError, match="got"):
        imresize(np.zeros(4), scale=2)
    with pytest.raises(TypeError, match="bool"):
        imresize(np.zeros((4, 4), dtype=bool), scale=2)
