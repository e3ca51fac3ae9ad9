"""paper digest."""
