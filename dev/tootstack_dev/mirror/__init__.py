"""The mirror command (`tootstack mirror`, `python -m tootstack_dev.mirror`); the copier itself is tootstack.mirror."""
