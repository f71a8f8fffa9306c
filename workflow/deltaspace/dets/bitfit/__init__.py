"""BitFit as a bias delta: config.py declares it (torch-free), model.py implements it."""
