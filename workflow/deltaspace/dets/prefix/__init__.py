"""Prefix tuning, the paper's reparameterised form: config.py declares it (torch-free), model.py implements it."""
