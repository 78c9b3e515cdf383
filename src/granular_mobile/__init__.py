"""granular-mobile: Granular-DQ super-resolution from research model to phone."""
__version__ = "0.1.0"
