"""Imports every recognizer module so that each registers itself."""
