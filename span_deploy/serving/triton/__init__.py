"""Triton Inference Server: a model repository for SPAN and a way to run the real server.

* ``repository``: ``write_repository`` writes ``span_features`` (features + coords -> SPAN outputs),
  and with an encoder ``patch_encoder`` (tiles -> features, dynamic batching) and ``span_slide``
  (BLS: one slide's tiles + coords -> SPAN outputs); every config.pbtxt follows Triton's
  model-config schema.
* ``models/``: the Python-backend models; each version dir's ``model.py`` is a bootstrap that
  makes span-deploy importable in the backend stub and imports the model class from here.
* ``server``: find a ``tritonserver`` (the nvidia-pytriton wheel's, or NVIDIA's container), start it
  on loopback, wait for readiness, stop it.
"""
