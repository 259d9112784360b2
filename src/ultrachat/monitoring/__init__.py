"""The plan's MetricsCollector, its snapshot history, the SLO report and the live feed."""
