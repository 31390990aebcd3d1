"""Integrations: callbacks and loggers for the training frameworks people already use.

One module per framework (`integrations/transformers.py`, `integrations/keras.py`, ...); each imports its
framework at its top, so it is loaded only by code that asks for it: `import alexandria` never loads one.
"""
