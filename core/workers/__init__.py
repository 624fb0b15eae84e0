"""Model workers: heavy compute in its own process (the third layer), behind one interface."""
