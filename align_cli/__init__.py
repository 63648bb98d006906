"""align: an experiment runner comparing language-model alignment algorithms."""

__version__ = "0.1.0"
