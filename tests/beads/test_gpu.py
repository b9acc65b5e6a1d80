"""CuPy runs of the vectorized kernels agree with NumPy and results stay on the device."""

from __future__ import annotations

import numpy as np
import pytest

from stacklab.beads import locate, lookup_z, qi, radial_profiles, track

pytestmark = pytest.mark.gpu


def test_track_on_gpu_matches_cpu(cupy, lut_fast, beads_noisy):
    stack = beads_noisy.images[:60]
    cpu = track(stack, lut_fast, backend="xp")
    gpu = track(cupy.asarray(stack), lut_fast)
    assert isinstance(gpu.x, cupy.ndarray) and isinstance(gpu.profiles, cupy.ndarray)
    for name in ("x", "y", "z", "quality", "symmetry"):
        np.testing.assert_allclose(
            cupy.asnumpy(getattr(gpu, name)), getattr(cpu, name), rtol=1e-7, atol=1e-7
        )


def test_kernels_on_gpu(cupy, lut_fast, beads_clean):
    stack = beads_clean.images[:30]
    g = cupy.asarray(stack)
    x, y = locate(g)
    xc, yc = locate(stack, backend="xp")
    np.testing.assert_allclose(cupy.asnumpy(x), xc, atol=1e-7)
    xq, _ = qi(g, x, y)
    np.testing.assert_allclose(cupy.asnumpy(xq), qi(stack, xc, yc, backend="xp")[0], atol=1e-7)
    p = radial_profiles(g, x, y)
    z, _ = lookup_z(p, lut_fast)
    assert isinstance(z, cupy.ndarray)
    np.testing.assert_allclose(cupy.asnumpy(z), beads_clean.z[:30], atol=10.0)
    with pytest.raises(TypeError, match="numba"):
        qi(g, x, y, backend="numba")
