"""Fine-tuning as a DET: config.py declares it (torch-free), model.py implements it."""
