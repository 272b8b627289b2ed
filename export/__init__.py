"""``qnet.export``: everything that talks to QONNX, hls4ml, da4ml and the synthesis tools.

Submodules are imported on use (they pull in hls4ml / onnx / torch)."""
