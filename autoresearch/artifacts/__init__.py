"""What a run leaves besides its row: run directories, weights, text samples."""
