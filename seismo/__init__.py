"""seismo: real-time social-signal stream processor."""

__version__ = "0.1.0"
