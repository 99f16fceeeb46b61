"""The storage layer: checkpoint reading, the weight mapping table and shape rules, Hugging Face
writing, manifests and the sha256 gate over converted directories, atomic directories and locks,
random checkpoints. Imports only the core layer (and numpy, safetensors, tokenizers; torch only
inside the functions that read bf16 or pickle weights).
"""
