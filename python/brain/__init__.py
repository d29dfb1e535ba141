"""BRAIn: Bayesian Reward-conditioned Amortized Inference, the C++ library's LibTorch backend.

brain_loss, surrogate_loss, the log-prob operations and the rest take and return torch.Tensor;
their losses are differentiable through autograd. Bad input raises ValueError.
"""

import torch  # noqa: F401  (first: loads LibTorch and registers torch.Tensor's Python type)

from ._brain import *  # noqa: F401,F403
from ._brain import __version__  # noqa: F401
