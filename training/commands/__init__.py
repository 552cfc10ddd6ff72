"""One module per training-side CLI command (see training/cli.py)."""
