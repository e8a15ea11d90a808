"""Deploy targets (export/targets/*.yaml) and the self-describing model directory they produce."""
