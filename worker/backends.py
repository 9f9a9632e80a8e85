"""The inference backends' names, in a module light enough for the settings table to import
(worker/detector, which runs them, imports numpy, OpenCV and the runtimes)."""

BACKENDS = ("onnxruntime", "onnxruntime-int8", "openvino", "openvino-bf16", "openvino-int8", "pytorch", "cuda")
