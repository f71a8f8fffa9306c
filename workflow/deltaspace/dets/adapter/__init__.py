"""Houlsby bottleneck adapter: config.py declares it (torch-free), model.py implements it."""
