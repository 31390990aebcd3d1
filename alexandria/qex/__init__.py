"""qex: quantum experiments on the Alexandria store (see README, "qex")."""
