"""What the scripts (train.py, sample.py, data/*/prepare.py) share, one job per module."""
