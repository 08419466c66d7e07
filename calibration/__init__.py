"""INT8 calibration: a calibration set of count statistics and the Q/DQ ONNX built from it.

TensorRT 11 has no implicit INT8 calibration, so quantization is explicit and happens on
the host: ``calibset`` turns statistics (the synthetic prior, recorded robot logs, saved
CountStats files) into padded model inputs; ``quantize`` writes ``model.int8.onnx`` with
Q/DQ nodes around the linear layers (ONNX Runtime's static QDQ quantization);
``sensitivity`` measures which of those layers cost agreement with FP32.
"""
