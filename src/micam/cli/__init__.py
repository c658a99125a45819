"""Command-line interface (``micam explain``)."""
