"""TensorRT backend (``trt``): engine building, shape profiles, the sidecar, plugin loading, the runner.

build:    ONNX -> serialized engine (+ sidecar); every flag decision in pure, tested functions
profiles: optimisation profiles from token ranges or a profile file (no TensorRT needed)
sidecar:  model.engine.json, the span-deploy metadata of an engine
plugin:   import tensorrt, load the SparseWindowAttention plugin library once
runner:   TrtBackend; device buffers and the stream through polygraphy's CUDA wrapper (no torch)
"""
