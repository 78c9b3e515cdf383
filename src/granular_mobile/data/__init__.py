"""Data: MATLAB-compatible bicubic resize, image folders, training crops."""
