"""Export: a controller graph plus one static integer SR graph per level, and a manifest.

    from granular_mobile.export import export
    manifest = export("default", ["onnx", "tflite"], "out/", verify=True)
"""
from .exporter import TARGETS, export

__all__ = ["TARGETS", "export"]
