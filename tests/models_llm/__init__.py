"""Tests of the LLM, VL and SD backends, the model manager and the inference facade."""
