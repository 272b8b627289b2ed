"""Lowering handlers of the built-in layers (see qnet.lower for the handler signature)."""
