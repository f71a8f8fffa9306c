"""File names inside a stage's output folder, in one place (importing them costs no torch)."""
DELTA_FILE = "delta.safetensors"
METRICS_FILE = "metrics.json"
CHECKPOINT_FILE = "last.pt"
RESULT_FILE = "result.json"  # stage 3
