"""Built-in contrastive plugins."""
