"""Resolution conventions (µm per pixel), dependency-free so the CLI can range-check options at
start-up without importing OpenSlide or numpy."""

DEFAULT_TARGET_MPP = 0.5          # "20x"
MPP_PLAUSIBLE = (0.05, 10.0)      # µm/px; outside this the metadata is wrong (e.g. dpi as mpp)
