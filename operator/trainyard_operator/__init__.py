"""Trainyard operator: a kopf-based controller for TrainingJob resources."""
