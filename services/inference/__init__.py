"""Engagement inference: the only service that imports TensorFlow (and only for Keras bundles).

bundle.py     load a model bundle (card + Keras/TFLite/ONNX model) as a Predictor, pick an engine
engines.py    keras (direct call in tf.function), tflite (LiteRT), predict (reference way)
onnx_engine.py  onnx: ONNX Runtime on model.onnx (TensorRT, CUDA or CPU provider; no TensorFlow)
gpu_check.py  every engine and provider of this machine against Keras on real crops, ms/face
baseline/     the face-mesh attention baseline (no engagement data, no TensorFlow; the mesh
              runner is shared/vision/face_mesh.py, which the sample-video tool uses too)
service.py    the `inference` service: batch -> predictions
"""
