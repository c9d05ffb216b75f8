"""modeldiff: compare learning algorithms by the training data their models rely on."""
__version__ = "0.1.0"
