"""Board description files (``*.toml``), shipped as package data of ``qnet.boards``."""
