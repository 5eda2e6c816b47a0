"""SSL Studio: train self-supervised image encoders on your own images."""

__version__ = "0.1.0"
