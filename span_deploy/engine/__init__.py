"""TensorRT engines: shape profiles (pure python) and the engine builder (TensorRT imported lazily)."""
