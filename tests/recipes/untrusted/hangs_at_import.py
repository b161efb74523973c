"""A test-only model plugin that never finishes importing (the import time-out must fire)."""

while True:
    pass
