"""span-deploy: run SPAN whole-slide models from checkpoint to ONNX Runtime / TensorRT.

    import span_deploy
    model = span_deploy.load("model_dir")              # or model.onnx / model.engine
    pred = model.predict(features, coords)             # in memory: logits, probabilities, embeddings

See span_deploy.api for units and thread safety, span_deploy.scan for scan-time sessions.
Importing this package (and the runtime under it) does not import torch; the API's heavier
modules load on first use.
"""
from .errors import SpanDeployError

__version__ = "0.1.0"
__all__ = ["Cancelled", "Model", "Prediction", "SlideOptions", "SlideSession", "SpanDeployError", "__version__",
           "load"]

_LAZY = {"load": "api", "Model": "api", "Prediction": "api", "Cancelled": "pipeline", "SlideOptions": "pipeline",
         "SlideSession": "scan"}


def __getattr__(name: str):
    # Lazy: `span-deploy --help` and `import span_deploy.errors` stay fast (no onnx / h5py import).
    if name in _LAZY:
        from importlib import import_module
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
