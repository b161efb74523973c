"""deploysnake: a trained model to a Triton deployment that is proven correct and measured."""

__version__ = "0.1.0"
