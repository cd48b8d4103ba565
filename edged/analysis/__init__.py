"""Analysis: turning inbox records into results with the model, calling it as rarely as possible."""
