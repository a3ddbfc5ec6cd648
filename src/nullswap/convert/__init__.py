"""Model-format converters: foreign model files (TF.js graph models) to PyTorch modules."""
