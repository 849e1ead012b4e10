"""Version of the vendored core, stamped into every staged manifest."""

__version__ = "0.1.0"
