"""Learning on the box: a small triage classifier and an index of labeled examples.

Technicians' labels (web corrections, imported CSVs, optionally confident model answers) train a
linear classifier over hashed character n-grams, exported as a .tflite model and run with LiteRT.
When it is confident, its label is the classification and the language model is not called; when
it is not, the model decides with the most similar labeled examples in its prompt.
"""
