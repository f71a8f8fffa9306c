"""LoRA through PEFT: config.py declares it (torch-free), model.py implements it."""
