"""Export: a controller graph plus one static-bit integer SR graph per bit level, and a manifest.

    from granular_mobile.export import export
    manifest = export("default", ["onnx", "tflite"], "out/", verify=True)
"""
from .exporter import TARGETS, export

__all__ = ["TARGETS", "export"]
