"""Engagement inference: the only service that imports TensorFlow (and only for Keras bundles).

bundle.py     load a model bundle (card + Keras/TFLite model) as a Predictor, pick an engine
engines.py    keras (direct call in tf.function), tflite (LiteRT), predict (reference way)
baseline/     the face-mesh attention baseline (no engagement data, no TensorFlow; the mesh
              runner is shared/face_mesh.py, which the sample-video tool uses too)
service.py    the `inference` service: batch -> predictions
"""
