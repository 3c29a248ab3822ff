"""Model runtimes (ONNX Runtime, optional TensorRT) behind one small interface."""
