"""BRAIn: Bayesian Reward-conditioned Amortized Inference, the C++ library's LibTorch backend.

brain_loss, surrogate_loss, the log-prob operations and the rest take and return torch.Tensor;
their losses are differentiable through autograd. Bad input raises ValueError.
"""

import torch  # noqa: F401  (first: loads LibTorch and registers torch.Tensor's Python type)

try:  # written by a pip build (setup.py); absent from the CMake build, which checks torch itself
    from ._build import TORCH_VERSION as _BUILT_WITH_TORCH
except ImportError:
    _BUILT_WITH_TORCH = None
if _BUILT_WITH_TORCH is not None and _BUILT_WITH_TORCH != torch.__version__:
    raise ImportError(
        f"brain was built against torch {_BUILT_WITH_TORCH} but torch {torch.__version__} is imported; "
        "its compiled module shares torch's tensors and autograd, so it works with that torch only: "
        "reinstall brain under this torch (pip install --no-build-isolation <brain's source>)")

from ._brain import *  # noqa: F401,F403
from ._brain import __version__  # noqa: F401
