//! The PP-OCRv4 text recogniser (`ch_PP-OCRv4_rec_infer.onnx`), restricted to plate characters.
