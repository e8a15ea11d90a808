"""Output writers (all atomic): features h5, heatmap PNG, QuPath GeoJSON, JSON/CSV results."""
