"""The engine: runs sync passes over sources and checkpoints them."""
