"""webrtcvad (package webrtcvad-wheels): a tiny GMM VAD, speech yes/no per 10/20/30 ms frame."""
