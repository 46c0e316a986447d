"""seismo's models: text features, classifiers (training, artifacts, inference)."""
