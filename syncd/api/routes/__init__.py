"""One module of routes per resource; each exports ``router``."""
