"""chatworks: train, serve, ground, evaluate, observe, secure and deploy a chat model."""

__version__ = "0.1.0"
