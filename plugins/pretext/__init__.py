"""Built-in pretext plugins."""
