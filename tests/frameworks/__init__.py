"""Tests of the framework integrations (Lightning, Transformers, Keras, torch's launchers): they run in the
frameworks environment (`.ci/run` makes it); elsewhere `need_framework` skips them with the reason."""
