"""One-off experiments that explain a result of the suite (each writes its own results file)."""
