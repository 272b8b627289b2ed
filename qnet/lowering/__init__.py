"""Built-in lowering handlers (registered into :mod:`qnet.lower` on import)."""
