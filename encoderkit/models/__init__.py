"""Our own encoders for frameworks transformers 5 no longer covers (TensorFlow, Flax)."""
