"""Datasets: LFW (verification), identity-labelled folders (training and identification)."""
