"""model_export package."""
