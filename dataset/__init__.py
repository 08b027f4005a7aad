"""Corpora: PTB (word level) and character corpora."""
