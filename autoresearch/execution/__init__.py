"""Running train.py once and reading what it printed."""
