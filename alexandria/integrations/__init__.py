"""Integrations with training frameworks: each module imports its framework (an optional extra) only when it
is itself imported, never from `import alexandria`."""
