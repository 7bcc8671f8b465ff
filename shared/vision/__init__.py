"""The vision layer: faces in pictures, used by more than one service or by training.

Face detectors (BlazeFace, res10 SSD) and sliced search for small faces, the face mesh, the
attention baseline's rule and its model card, frame sizing that keeps the aspect ratio, and
screen capture. Imports the layers below (data, bus, ops) for weights, settings and levels.
"""
