"""span-deploy: run SPAN whole-slide models from checkpoint to ONNX Runtime / TensorRT.

Importing this package (and the runtime under it) does not import torch.
"""
from .errors import SpanDeployError

__version__ = "0.1.0"
__all__ = ["SpanDeployError", "__version__"]
