"""The Python-backend models. They import ``triton_python_backend_utils`` (only inside the server's
backend stub) through ``common.pb()``, so importing these modules anywhere else is harmless."""
