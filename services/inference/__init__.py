"""Engagement inference: the only service that imports TensorFlow (and only for Keras bundles).

bundle.py     load a model bundle (card + Keras/TFLite model) as a Predictor, pick an engine
engines.py    keras (direct call in tf.function), tflite (LiteRT), predict (reference way)
baseline/     the face-mesh attention baseline (no engagement data, no TensorFlow)
card_info.py  sequence length of a MODEL setting without importing TensorFlow
service.py    the `inference` service: batch -> predictions
"""
